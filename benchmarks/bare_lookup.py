"""The load benchmark's ceiling: a bare lookup on the same server, configured the same way.

A Granian RSGI app that answers ``/users/<id>/recommendations?k=10`` from a dict of the
service's own answers, prepared at start-up (and its heap frozen, as the service's is after a
load): no validation, no middleware, no metrics, no access log. ``benchmarks/serve_load.py``
runs it beside ``music-platform serve``.

    .venv/bin/python benchmarks/bare_lookup.py PORT WORKERS   # MUSIC_PLATFORM_DUCKDB_PATH=...
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from music_platform.config import Settings  # noqa: E402
from music_platform.serving.server import event_loop, granian_server, listen_backlog  # noqa: E402
from music_platform.serving.service import ServingConfig  # noqa: E402
from music_platform.serving.snapshot import latest_published_version, load_snapshot  # noqa: E402
from music_platform.warehouse import connect_warehouse  # noqa: E402

HEADERS = [("content-type", "application/json")]
NOT_FOUND = b'{"error":"Not Found","status":404,"message":"Not Found"}'


class BareLookup:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def __rsgi_init__(self, loop) -> None:
        warehouse = connect_warehouse(Settings.from_env())
        snapshot = load_snapshot(warehouse, latest_published_version(warehouse))
        self.bodies = {
            f"/users/{user}/recommendations": snapshot.user_recommendations_json(user, 10)
            for user in snapshot.user_index
        }
        del snapshot
        # As the service after a load (service._settle_heap): what is loaded is frozen out of
        # the garbage collector's sight, so the ceiling never pays for collections the service
        # does not pay for.
        gc.collect()
        gc.freeze()

    async def __rsgi__(self, scope, proto) -> None:
        body = self.bodies.get(scope.path)
        if body is None:
            proto.response_bytes(404, HEADERS, NOT_FOUND)
        else:
            proto.response_bytes(200, HEADERS, body)


def create_bare_app() -> BareLookup:
    return BareLookup()


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = granian_server(
        "127.0.0.1",
        port,
        workers,
        ServingConfig.from_env(),
        event_loop(),
        listen_backlog(),
        target="bare_lookup:create_bare_app",
    )
    server.serve()


if __name__ == "__main__":
    main()
