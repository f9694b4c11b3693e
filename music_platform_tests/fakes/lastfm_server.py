"""A local fake of the Last.fm API (JSON format) with fault injection.

It serves a deterministic world (users, artists, tracks, tags, listening histories
generated from a seed) in the real response shapes of ``ws.audioscrobbler.com/2.0/``,
including the quirks: numbers as strings, the extra now-playing item on page 1 (outside the
window and outside ``total``), ``[from, to)`` windows, empty mbids, error bodies with the
HTTP statuses Last.fm really uses (some with 200), and optionally a single item as an
object instead of a list.

Use in tests::

    with FakeLastfmServer(users=3, days=7, seed=7, end_uts=END) as server:
        server.add_fault(Fault("error", code=8, method="user.getrecenttracks", times=2))
        client = LastfmClient(server.api_key, server.url, ...)
        ...
        server.requests  # every request: monotonic time, method, params (no key), status

By hand (then point LASTFM_API_ROOT at it)::

    python -m music_platform_tests.fakes.lastfm_server --port 8765 --users 5 --days 7
    # prints: LASTFM_API_ROOT=http://127.0.0.1:8765/2.0/  LASTFM_API_KEY=fake-lastfm-key  LASTFM_USERS=...

Faults (:class:`Fault`, consumed in the order added, each for ``times`` matching requests
after letting ``skip`` through):

- ``error``: a Last.fm error body with code ``code`` and its real HTTP status (``status`` overrides);
- ``html``: a Google-frontend HTML error page (``status`` 502 by default, or 504);
- ``sleep``: wait ``delay_s`` before answering normally (beyond the client's read timeout → a timeout;
  below it → a slow response);
- ``insert``: add scrobbles ``(user, uts)`` to the world, then answer normally (scrobbles arriving
  during pagination).

``single_object_lists=True`` answers a one-item list as an object, as Last.fm sometimes does.
Accepts GET (query string) and POST (form body), like the real API.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

DEFAULT_API_KEY = "fake-lastfm-key"
GENRES = ("rock", "pop", "hip-hop", "electronic", "jazz", "metal", "indie", "folk")
_EXTRA_TAGS = ("seen live", "female vocalists", "80s", "90s", "00s", "chill", "instrumental", "british", "american")
_WORDS_A = (
    "Silver", "Velvet", "Electric", "Midnight", "Golden", "Broken", "Crystal", "Neon", "Wild", "Quiet",
    "Paper", "Iron", "Lunar", "Hidden", "Scarlet", "Frozen", "Distant", "Static", "Hollow", "Bright",
)  # fmt: skip
_WORDS_B = (
    "Harbor", "Engines", "Foxes", "Echoes", "Rivers", "Ghosts", "Machines", "Gardens", "Tides", "Lanterns",
    "Wolves", "Satellites", "Mirrors", "Horizons", "Sparrows", "Cathedrals", "Signals", "Islands", "Comets",
)  # fmt: skip
_TRACK_WORDS = (
    "Love", "Night", "Run", "Fire", "Home", "Dream", "Light", "Road", "Heart", "Rain", "Gold", "Sky", "Time",
    "Dance", "Stay", "Fall", "Shadow", "Summer", "Ocean", "Storm", "Stars", "Blue", "Alone", "Again",
)  # fmt: skip
_COUNTRIES = ("United Kingdom", "Germany", "Brazil", "Japan", "United States", "None", "")
#: Artist and track names in other scripts and in symbols only, as real listeners' libraries hold
#: them (``artist_names=``/``track_names=`` of the world; every name has a key of its own).
ARTISTS_IN_EVERY_SCRIPT = (
    "고시우", "방탄소년단", "清水 拓真", "周杰倫", "宇多田ヒカル", "ゲスの極み乙女", "Анжела Рожкова", "Земфира",
    "Мумий Тролль", "Ελένη Φουρέιρα", "عمرو دياب", "فيروز", "עומר אדם", "คาราบาว", "बादशाह", "!!!", "!!!!",
    "+/-", "†††", "★", "🎵🎶", "Sigur Rós", "Mø", "ＢＴＳ",
)  # fmt: skip
TRACKS_IN_EVERY_SCRIPT = (
    "봄날", "夜に駆ける", "Кукла колдуна", "Ya Nour El Ein", "حبيبي يا نور العين", "אהבה", "ลาวดวงเดือน",
    "…", "???", "ラブレター", "爱你", "Γκρεμίστε", "Hoppípolla", "Ёлка", "!", "—",
)  # fmt: skip

#: Real messages and HTTP statuses (API-CONTRACTS.md §1.4). Code 6's status depends on the method.
ERROR_MESSAGES = {
    2: "Invalid service - This service does not exist",
    3: "Invalid Method - No method with that name in this package",
    4: "Authentication Failed - You do not have permissions to access the service",
    6: "Invalid parameters - Your request is missing a required parameter",
    8: "Operation failed - Most likely the backend service failed. Please try again.",
    9: "Invalid session key - Please re-authenticate",
    10: "Invalid API key - You must be granted a valid key by last.fm",
    11: "Service Offline - This service is temporarily offline. Try again later.",
    13: "Invalid method signature supplied",
    16: "There was a temporary error processing your request. Please try again",
    17: "Login: User required to be logged in",
    26: "Suspended API key - Access for your account has been suspended, please contact Last.fm",
    29: "Rate Limit Exceeded - This application has made too many requests in a short period",
}
ERROR_STATUS = {
    2: 400,
    3: 400,
    4: 403,
    6: 400,
    8: 500,
    9: 403,
    10: 403,
    11: 503,
    13: 403,
    16: 200,
    17: 403,
    26: 403,
    29: 429,
}
# Error 6 "not found": 404 on user.* and artist.getInfo, 200 on the tag/track/similar lookups.
_NOT_FOUND_404_METHODS = ("user.", "artist.getinfo")

_HTML_PAGE = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error {status} (Server Error)!!1</title>
  <p><b>{status}.</b> <ins>That\u2019s an error.</ins>
  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.
  <ins>That\u2019s all we know.</ins>
"""


@dataclass
class Fault:
    kind: str  # "error" | "html" | "sleep" | "insert"
    code: int | None = None
    status: int | None = None
    delay_s: float = 0.0
    method: str | None = None  # lower-case Last.fm method; None matches every method
    page: int | None = None  # only requests for this page
    user: str | None = None  # only requests for this user
    times: int = 1
    skip: int = 0
    insert: list[tuple[str, int]] = field(default_factory=list)
    applied: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("error", "html", "sleep", "insert"):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "error" and self.code is None:
            raise ValueError("an 'error' fault needs a Last.fm error code")
        if self.method:
            self.method = self.method.lower()

    def matches(self, method: str, params: Mapping[str, str]) -> bool:
        if self.method and self.method != method:
            return False
        if self.page is not None and str(self.page) != params.get("page", "1"):
            return False
        if self.user is not None and self.user != params.get("user"):
            return False
        return True


@dataclass
class RecordedRequest:
    at: float  # time.monotonic() when the request arrived (recorded at once, before any fault)
    http_method: str
    method: str
    params: dict[str, str]  # without api_key
    fault: str | None
    status: int | None = None  # set when the answer is ready


@dataclass(frozen=True)
class Track:
    name: str
    artist: int
    mbid: str
    album: str
    album_mbid: str
    duration_s: int


@dataclass(frozen=True)
class Artist:
    name: str
    mbid: str
    tags: tuple[tuple[str, int], ...]


@dataclass
class FakeUser:
    name: str
    real_name: str
    country: str
    age: int
    gender: str
    registered_uts: int
    private: bool = False
    now_playing: int | None = None  # track index


class FakeLastfmWorld:
    """Deterministic users, catalogue and histories; mutable under a lock (``insert``)."""

    def __init__(
        self,
        *,
        users: int = 5,
        days: int = 7,
        seed: int = 7,
        end_uts: int | None = None,
        scrobbles_per_day: tuple[int, int] = (15, 60),
        artists: int = 60,
        private_users: Iterable[str] = (),
        now_playing: bool = True,
        artist_names: Iterable[str] = (),
        track_names: Iterable[str] = (),
    ) -> None:
        """``artist_names`` name the first artists (the rest are generated), ``track_names`` are the
        pool their tracks are named from (e.g. ``ARTISTS_IN_EVERY_SCRIPT``/``TRACKS_IN_EVERY_SCRIPT``)."""
        rng = random.Random(seed)
        given_artists, given_tracks = list(artist_names), list(track_names)
        self.end_uts = end_uts if end_uts is not None else int(time.time()) // 86400 * 86400
        self.start_uts = self.end_uts - days * 86400
        self._lock = threading.Lock()
        self.artists: list[Artist] = []
        used_names: set[str] = set()
        for index in range(max(artists, len(given_artists))):
            if index < len(given_artists):
                name = given_artists[index]
            else:
                name = f"{rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)}"
            while name in used_names:
                name = f"{name} {index}"
            used_names.add(name)
            genre = GENRES[index % len(GENRES)]
            extra = rng.sample(_EXTRA_TAGS, rng.randint(1, 3))
            counts = [100] + sorted((rng.randint(5, 95) for _ in extra), reverse=True)
            self.artists.append(Artist(name, _maybe_mbid(rng, 0.7), tuple(zip([genre, *extra], counts, strict=True))))
        self.tracks: list[Track] = []
        for artist_index, _artist in enumerate(self.artists):
            album = f"{rng.choice(_TRACK_WORDS)} {rng.choice(_WORDS_B)}"
            album_mbid = _maybe_mbid(rng, 0.5)
            for _ in range(rng.randint(4, 9)):
                name = f"{rng.choice(_TRACK_WORDS)} {rng.choice(_TRACK_WORDS)}"
                if artist_index < len(given_artists) and given_tracks:
                    name = rng.choice(given_tracks)
                self.tracks.append(
                    Track(name, artist_index, _maybe_mbid(rng, 0.6), album if rng.random() < 0.8 else "", album_mbid,
                          rng.choice((0, rng.randint(120, 420))))
                )  # fmt: skip
        private = set(private_users)
        self.users: dict[str, FakeUser] = {}
        self.history: dict[str, list[tuple[int, int]]] = {}  # user -> [(uts, track)] newest first
        for index in range(users):
            name = f"listener{index + 1:02d}"
            self.users[name] = FakeUser(
                name=name,
                real_name=rng.choice(("", "Alex", "Sam", "Kim", "Noor")),
                country=rng.choice(_COUNTRIES),
                age=rng.choice((0, 0, rng.randint(16, 70))),
                gender=rng.choice(("n", "m", "f")),
                registered_uts=self.start_uts - rng.randint(30, 3000) * 86400,
                private=name in private,
                now_playing=rng.randrange(len(self.tracks)) if now_playing and index % 2 == 0 else None,
            )
            favourite = rng.sample(range(len(GENRES)), 2)
            events: set[int] = set()
            plays: list[tuple[int, int]] = []
            for day in range(days):
                day_start = self.start_uts + day * 86400
                for _ in range(rng.randint(*scrobbles_per_day)):
                    uts = day_start + rng.randrange(86400)
                    if uts in events:
                        continue
                    events.add(uts)
                    plays.append((uts, self._pick_track(rng, favourite)))
            plays.sort(reverse=True)
            self.history[name] = plays
        for name in private:
            self.users.setdefault(name, FakeUser(name, "", "", 0, "n", self.start_uts, private=True))
            self.history.setdefault(name, [])

    def _pick_track(self, rng: random.Random, favourite: list[int]) -> int:
        if rng.random() < 0.7:
            genre = rng.choice(favourite)
            artist = rng.choice([i for i in range(len(self.artists)) if i % len(GENRES) == genre])
        else:
            artist = min(int(rng.paretovariate(1.2)) - 1, len(self.artists) - 1)
        candidates = [i for i, t in enumerate(self.tracks) if t.artist == artist]
        return candidates[min(int(rng.expovariate(0.6)), len(candidates) - 1)]

    # -- queries -----------------------------------------------------------------------------------
    def scrobbles(self, user: str, time_from: int | None = None, time_to: int | None = None) -> list[tuple[int, int]]:
        """``(uts, track)`` of ``user`` in ``[time_from, time_to)``, newest first."""
        with self._lock:
            plays = list(self.history.get(user, []))
        return [p for p in plays if (time_from is None or p[0] >= time_from) and (time_to is None or p[0] < time_to)]

    def expected_keys(self, user: str, time_from: int, time_to: int) -> list[tuple[str, int, str, str]]:
        """The raw-table keys ``(user, uts, artist, track)`` a correct client must load."""
        out = []
        for uts, track_index in self.scrobbles(user, time_from, time_to):
            track = self.tracks[track_index]
            out.append((user, uts, self.artists[track.artist].name, track.name))
        return out

    def insert(self, user: str, uts: int, track_index: int | None = None) -> None:
        with self._lock:
            plays = self.history.setdefault(user, [])
            taken = {p[0] for p in plays}
            while uts in taken:
                uts += 1
            plays.append((uts, track_index if track_index is not None else uts % len(self.tracks)))
            plays.sort(reverse=True)

    def play_counts(self) -> tuple[Counter, Counter, dict[str, set[str]]]:
        tracks: Counter = Counter()
        listeners: dict[int, set[str]] = {}
        with self._lock:
            for user, plays in self.history.items():
                for _uts, track in plays:
                    tracks[track] += 1
                    listeners.setdefault(track, set()).add(user)
        artists: Counter = Counter()
        for track, count in tracks.items():
            artists[self.tracks[track].artist] += count
        return tracks, artists, {str(k): v for k, v in listeners.items()}

    def artist_index(self, name: str) -> int | None:
        lowered = name.strip().lower()
        for index, artist in enumerate(self.artists):
            if artist.name.lower() == lowered:
                return index
        return None


def _maybe_mbid(rng: random.Random, probability: float) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < probability else ""


def _images(kind: str, seed: str) -> list[dict[str, str]]:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{seed}").hex
    sizes = (("small", "34s"), ("medium", "64s"), ("large", "174s"), ("extralarge", "300x300"))
    return [{"size": s, "#text": f"https://lastfm.freetls.fastly.net/i/u/{p}/{digest}.png"} for s, p in sizes]


def _url(*parts: str) -> str:
    return "https://www.last.fm/music/" + "/_/".join(quote_plus(p) for p in parts)


class LastfmHandlerError(Exception):
    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Error")
        self.status = status


class FakeLastfmServer:
    """The fake API on 127.0.0.1 (free port by default); a context manager."""

    def __init__(
        self,
        *,
        users: int = 5,
        days: int = 7,
        seed: int = 7,
        end_uts: int | None = None,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        single_object_lists: bool = False,
        private_users: Iterable[str] = (),
        now_playing: bool = True,
        scrobbles_per_day: tuple[int, int] = (15, 60),
        artist_names: Iterable[str] = (),
        track_names: Iterable[str] = (),
    ) -> None:
        self.world = FakeLastfmWorld(
            users=users,
            days=days,
            seed=seed,
            end_uts=end_uts,
            private_users=private_users,
            now_playing=now_playing,
            scrobbles_per_day=scrobbles_per_day,
            artist_names=artist_names,
            track_names=track_names,
        )
        self.api_key = api_key
        self.single_object_lists = single_object_lists
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/2.0/"

    @property
    def user_names(self) -> list[str]:
        return list(self.world.users)

    def start(self) -> FakeLastfmServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-lastfm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop that never ran
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeLastfmServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- faults and the request log ------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def requests_for(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.lower()]

    def _take_fault(self, method: str, params: Mapping[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applied >= fault.times or not fault.matches(method, params):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.applied += 1
                return fault
        return None

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # -- HTTP -------------------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "openresty"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return  # quiet: the request line would carry the query string

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self._serve(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8") if length else ""
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                params.update(parse_qsl(body, keep_blank_values=True))
                self._serve(params)

            def _serve(self, params: dict[str, str]) -> None:
                arrived = time.monotonic()
                method = params.get("method", "").lower()
                logged = {k: v for k, v in params.items() if k != "api_key"}
                fault = server._take_fault(method, params)
                status, content_type, body = 200, "application/json", b""
                fault_name = None
                if fault is not None:
                    fault_name = fault.kind if fault.kind != "error" else f"error{fault.code}"
                entry = RecordedRequest(arrived, self.command, method, logged, fault_name)
                server._record(entry)
                if fault is not None:
                    if fault.kind == "sleep":
                        time.sleep(fault.delay_s)
                    elif fault.kind == "insert":
                        for user, uts in fault.insert:
                            server.world.insert(user, uts)
                if fault is not None and fault.kind == "error":
                    status, body = server._error_response(fault.code or 8, method, fault.status)
                elif fault is not None and fault.kind == "html":
                    status = fault.status or 502
                    content_type = "text/html; charset=UTF-8"
                    body = _HTML_PAGE.format(status=status).encode("utf-8")
                else:
                    status, body = server._answer(method, params)
                entry.status = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.send_header("Via", "1.1 google")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout): exactly what a timeout fault tests

        return Handler

    def _error_response(self, code: int, method: str, status: int | None = None, message: str | None = None):
        if status is None:
            status = ERROR_STATUS.get(code, 400)
            if code == 6 and message and ("not found" in message.lower() or "could not be found" in message.lower()):
                status = 404 if method.startswith(_NOT_FOUND_404_METHODS) else 200
        body = {"error": code, "message": message or ERROR_MESSAGES.get(code, "Error")}
        if code == 6:
            body["links"] = []
        return status, json.dumps(body).encode("utf-8")

    def _answer(self, method: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            if params.get("api_key") != self.api_key:
                raise LastfmHandlerError(10)
            if params.get("format") != "json":
                raise LastfmHandlerError(6, "This fake only speaks format=json")
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise LastfmHandlerError(3)
            payload = handler(params)
        except LastfmHandlerError as exc:
            return self._error_response(exc.code, method, exc.status, exc.message)
        return 200, json.dumps(payload, ensure_ascii=False).encode("utf-8")

    # -- shapes -----------------------------------------------------------------------------------------------
    def _list(self, items: list[Any]) -> Any:
        return items[0] if self.single_object_lists and len(items) == 1 else items

    @staticmethod
    def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
        raw = params.get(name, "")
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise LastfmHandlerError(6, f"Invalid {name} parameter") from None
        if not low <= value <= high:
            raise LastfmHandlerError(6, f"{name} param out of bounds ({low}-{high})")
        return value

    def _user(self, params: Mapping[str, str]) -> FakeUser:
        name = params.get("user", "")
        user = self.world.users.get(name)
        if user is None:
            raise LastfmHandlerError(6, "User not found")
        return user

    def _artist_json(self, index: int, extended: bool = False) -> dict[str, Any]:
        artist = self.world.artists[index]
        if extended:
            return {"url": _url(artist.name), "name": artist.name, "image": _images("artist", ""), "mbid": artist.mbid}
        return {"name": artist.name, "mbid": artist.mbid, "url": _url(artist.name)}

    def _recent_item(self, track_index: int, uts: int | None) -> dict[str, Any]:
        track = self.world.tracks[track_index]
        artist = self.world.artists[track.artist]
        item: dict[str, Any] = {
            "artist": {"mbid": artist.mbid, "#text": artist.name},
            "streamable": "0",
            "image": _images("album", track.album),
            "mbid": track.mbid,
            "album": {"mbid": track.album_mbid if track.album else "", "#text": track.album},
            "name": track.name,
            "url": _url(artist.name, track.name),
        }
        if uts is None:
            item["@attr"] = {"nowplaying": "true"}
        else:
            stamp = time.strftime("%d %b %Y, %H:%M", time.gmtime(uts))
            item["date"] = {"uts": str(uts), "#text": stamp}
        return item

    def _paged(self, items: list[Any], params: Mapping[str, str], default_limit: int = 50):
        limit = self._int_param(params, "limit", default_limit, 1, 1000)
        page = self._int_param(params, "page", 1, 1, 1_000_000)
        total = len(items)
        total_pages = math.ceil(total / limit) if total else 0
        start = (page - 1) * limit
        return (
            items[start : start + limit],
            {
                "page": str(page),
                "perPage": str(limit),
                "totalPages": str(total_pages),
                "total": str(total),
            },
            start,
        )

    def _m_user_getrecenttracks(self, params: Mapping[str, str]) -> dict[str, Any]:
        user = self._user(params)
        if user.private:
            raise LastfmHandlerError(17)
        time_from = int(params["from"]) if params.get("from") else None
        time_to = int(params["to"]) if params.get("to") else None
        plays = self.world.scrobbles(user.name, time_from, time_to)
        page_items, attr, _start = self._paged(plays, params, default_limit=50)
        items = [self._recent_item(track, uts) for uts, track in page_items]
        if user.now_playing is not None and attr["page"] == "1":
            # Real quirk: the now-playing item is extra, on page 1, even outside the window.
            items.insert(0, self._recent_item(user.now_playing, None))
        return {"recenttracks": {"track": self._list(items), "@attr": {"user": user.name, **attr}}}

    def _m_user_getinfo(self, params: Mapping[str, str]) -> dict[str, Any]:
        user = self._user(params)
        plays = len(self.world.scrobbles(user.name))
        return {
            "user": {
                "name": user.name,
                "realname": user.real_name,
                "url": f"https://www.last.fm/user/{user.name}",
                "country": user.country,
                "age": str(user.age),
                "gender": user.gender,
                "subscriber": "0",
                "playcount": str(plays),
                "playlists": "0",
                "bootstrap": "0",
                "type": "user",
                "registered": {"unixtime": str(user.registered_uts), "#text": user.registered_uts},
                "image": _images("user", user.name),
            }
        }

    def _user_counts(self, user: FakeUser) -> Counter:
        return Counter(track for _uts, track in self.world.scrobbles(user.name))

    def _m_user_gettoptracks(self, params: Mapping[str, str]) -> dict[str, Any]:
        user = self._user(params)
        ranked = self._user_counts(user).most_common()
        page_items, attr, start = self._paged(ranked, params)
        items = []
        for offset, (track_index, count) in enumerate(page_items):
            track = self.world.tracks[track_index]
            items.append(
                {
                    "@attr": {"rank": str(start + offset + 1)},
                    "name": track.name,
                    "duration": str(track.duration_s),
                    "playcount": str(count),
                    "mbid": track.mbid,
                    "url": _url(self.world.artists[track.artist].name, track.name),
                    "streamable": {"fulltrack": "0", "#text": "0"},
                    "artist": self._artist_json(track.artist),
                    "image": _images("album", track.album),
                }
            )
        return {"toptracks": {"track": self._list(items), "@attr": {"user": user.name, **attr}}}

    def _m_user_gettopartists(self, params: Mapping[str, str]) -> dict[str, Any]:
        user = self._user(params)
        artists: Counter = Counter()
        for track_index, count in self._user_counts(user).items():
            artists[self.world.tracks[track_index].artist] += count
        page_items, attr, start = self._paged(artists.most_common(), params)
        items = [
            {
                "@attr": {"rank": str(start + offset + 1)},
                "name": self.world.artists[index].name,
                "playcount": str(count),
                "mbid": self.world.artists[index].mbid,
                "url": _url(self.world.artists[index].name),
                "streamable": "0",
                "image": _images("artist", ""),
            }
            for offset, (index, count) in enumerate(page_items)
        ]
        return {"topartists": {"artist": self._list(items), "@attr": {"user": user.name, **attr}}}

    def _chart_track(self, track_index: int, count: int, listeners: int, rank: int | None = None) -> dict[str, Any]:
        track = self.world.tracks[track_index]
        item = {
            "name": track.name,
            "duration": str(track.duration_s),
            "playcount": str(count),
            "listeners": str(listeners),
            "mbid": track.mbid,
            "url": _url(self.world.artists[track.artist].name, track.name),
            "streamable": {"#text": "0", "fulltrack": "0"},
            "artist": self._artist_json(track.artist),
            "image": _images("album", track.album),
        }
        if rank is not None:
            item["@attr"] = {"rank": str(rank)}
        return item

    def _m_chart_gettoptracks(self, params: Mapping[str, str]) -> dict[str, Any]:
        tracks, _artists, listeners = self.world.play_counts()
        page_items, attr, _start = self._paged(tracks.most_common(), params)
        items = [self._chart_track(t, c, len(listeners.get(str(t), ()))) for t, c in page_items]
        return {"tracks": {"track": self._list(items), "@attr": attr}}

    def _m_chart_gettopartists(self, params: Mapping[str, str]) -> dict[str, Any]:
        _tracks, artists, _listeners = self.world.play_counts()
        page_items, attr, _start = self._paged(artists.most_common(), params)
        items = [
            {
                "name": self.world.artists[a].name,
                "playcount": str(c),
                "listeners": str(max(1, c // 3)),
                "mbid": self.world.artists[a].mbid,
                "url": _url(self.world.artists[a].name),
                "streamable": "0",
                "image": _images("artist", ""),
            }
            for a, c in page_items
        ]
        return {"artists": {"artist": self._list(items), "@attr": attr}}

    def _tagged_artists(self, tag: str) -> list[int]:
        lowered = tag.strip().lower()
        scored = []
        for index, artist in enumerate(self.world.artists):
            for name, count in artist.tags:
                if name.lower() == lowered:
                    scored.append((-count, index))
        return [index for _score, index in sorted(scored)]

    def _m_tag_gettoptracks(self, params: Mapping[str, str]) -> dict[str, Any]:
        tag = params.get("tag", "")
        tracks, _artists, listeners = self.world.play_counts()
        artists = set(self._tagged_artists(tag))
        ranked = sorted(
            (i for i, t in enumerate(self.world.tracks) if t.artist in artists), key=lambda i: (-tracks[i], i)
        )
        page_items, attr, start = self._paged(ranked, params)
        items = []
        for offset, t in enumerate(page_items):
            item = self._chart_track(t, tracks[t], len(listeners.get(str(t), ())), rank=start + offset + 1)
            del item["playcount"], item["listeners"]
            items.append(item)
        return {"tracks": {"track": self._list(items), "@attr": {"tag": tag, **attr}}}

    def _m_tag_gettopartists(self, params: Mapping[str, str]) -> dict[str, Any]:
        tag = params.get("tag", "")
        page_items, attr, start = self._paged(self._tagged_artists(tag), params)
        items = [
            {
                "name": self.world.artists[a].name,
                "mbid": self.world.artists[a].mbid,
                "url": _url(self.world.artists[a].name),
                "streamable": "0",
                "image": _images("artist", ""),
                "@attr": {"rank": str(start + offset + 1)},
            }
            for offset, a in enumerate(page_items)
        ]
        return {"topartists": {"artist": self._list(items), "@attr": {"tag": tag, **attr}}}

    def _artist_param(self, params: Mapping[str, str]) -> int:
        index = self.world.artist_index(params.get("artist", ""))
        if index is None:
            mbid = params.get("mbid", "")
            index = next((i for i, a in enumerate(self.world.artists) if mbid and a.mbid == mbid), None)
        if index is None:
            raise LastfmHandlerError(6, "The artist you supplied could not be found")
        return index

    def _m_artist_gettoptags(self, params: Mapping[str, str]) -> dict[str, Any]:
        index = self._artist_param(params)
        artist = self.world.artists[index]
        tags = [
            {"count": count, "name": name, "url": f"https://www.last.fm/tag/{quote_plus(name)}"}
            for name, count in artist.tags
        ]
        return {"toptags": {"tag": self._list(tags), "@attr": {"artist": artist.name}}}

    def _m_artist_getsimilar(self, params: Mapping[str, str]) -> dict[str, Any]:
        index = self._artist_param(params)
        limit = self._int_param(params, "limit", 30, 1, 1000)
        genre = self.world.artists[index].tags[0][0]
        similar = [i for i in self._tagged_artists(genre) if i != index][:limit]
        items = [
            {
                "name": self.world.artists[i].name,
                "mbid": self.world.artists[i].mbid,
                "match": f"{1 / (rank + 2):.6f}",
                "url": _url(self.world.artists[i].name),
                "image": _images("artist", ""),
                "streamable": "0",
            }
            for rank, i in enumerate(similar)
        ]
        return {"similarartists": {"artist": self._list(items), "@attr": {"artist": self.world.artists[index].name}}}

    def _m_track_getinfo(self, params: Mapping[str, str]) -> dict[str, Any]:
        artist_index = self.world.artist_index(params.get("artist", ""))
        wanted = params.get("track", "").strip().lower()
        found = None
        for i, track in enumerate(self.world.tracks):
            if track.artist == artist_index and track.name.lower() == wanted:
                found = i
                break
            if params.get("mbid") and track.mbid == params["mbid"]:
                found = i
                break
        if found is None:
            raise LastfmHandlerError(6, "Track not found")
        track = self.world.tracks[found]
        tracks, _artists, listeners = self.world.play_counts()
        artist = self.world.artists[track.artist]
        return {
            "track": {
                "name": track.name,
                "mbid": track.mbid,
                "url": _url(artist.name, track.name),
                "duration": str(track.duration_s * 1000),  # milliseconds here, unlike the lists
                "streamable": {"#text": "0", "fulltrack": "0"},
                "listeners": str(len(listeners.get(str(found), ()))),
                "playcount": str(tracks[found]),
                "artist": self._artist_json(track.artist),
                "album": {
                    "artist": artist.name,
                    "title": track.album,
                    "mbid": track.album_mbid,
                    "url": "",
                    "image": [],
                },
                "toptags": {"tag": [{"name": n, "url": ""} for n, _c in artist.tags]},
            }
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Last.fm API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--days", type=int, default=7, help="days of history ending today 00:00 UTC")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--single-object-lists", action="store_true")
    args = parser.parse_args(argv)
    server = FakeLastfmServer(
        users=args.users,
        days=args.days,
        seed=args.seed,
        api_key=args.api_key,
        port=args.port,
        single_object_lists=args.single_object_lists,
    )
    print(f"Fake Last.fm listening on {server.url}")
    print(f"  export LASTFM_API_ROOT={server.url}")
    print(f"  export LASTFM_API_KEY={server.api_key}")
    print(f"  export LASTFM_USERS={','.join(server.user_names)}")
    total = sum(len(server.world.scrobbles(u)) for u in server.user_names)
    start = time.strftime("%Y-%m-%d", time.gmtime(server.world.start_uts))
    end = time.strftime("%Y-%m-%d", time.gmtime(server.world.end_uts))
    print(f"  {total} scrobbles from {start} (inclusive) to {end} (exclusive). Ctrl-C stops.")
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
