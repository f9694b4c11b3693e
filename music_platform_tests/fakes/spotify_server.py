"""A local fake of the Spotify Web API and accounts service, for tests and demos.

Stdlib only (``ThreadingHTTPServer`` on 127.0.0.1, a free port). One server plays both
hosts: ``accounts_root`` (``POST /api/token``) and ``api_root`` (``/v1/...``). Shapes follow
the recorded spotify-web-api-java fixtures and ``API-CONTRACTS.md``:

- client-credentials tokens (Basic auth; ``invalid_client`` on a bad id or secret), which
  expire after ``token_ttl_s`` or on :meth:`FakeSpotifyServer.expire_tokens`;
- ``GET /v1/tracks?ids=`` (≤ 50), ``/v1/tracks/{id}``, ``/v1/artists?ids=`` (≤ 50),
  ``/v1/artists/{id}``, ``/v1/audio-features?ids=`` (≤ 100), ``/v1/audio-features/{id}``,
  ``/v1/search``, ``/v1/recommendations``, ``/v1/artists/{id}/related-artists`` and
  ``/top-tracks``; unknown ids are ``null`` entries in batch answers and 404 singly;
- three app modes (:data:`APP_MODES`) answering 403 exactly where Spotify does:
  ``dev_2024`` withdraws audio features, recommendations and related artists
  (``{"error": {"status": 403}}``, no message); ``dev_2026`` additionally withdraws the batch
  ``/tracks`` and ``/artists`` and top-tracks (``"Forbidden"``), caps search ``limit`` at 10
  (default 5; more is ``400 Invalid limit``) and stops sending ``popularity``, ``followers``,
  ``genres`` and ``available_markets``;
- scripted failures: :meth:`rate_limit_next` (429 with ``Retry-After``) and
  :meth:`fail_next` (e.g. 503), applied to the next API requests.

Start it by hand::

    python -m music_platform_tests.fakes.spotify_server --mode dev_2024 --port 8765

It prints the ``SPOTIFY_*`` variables that point the platform at it. ``--kaggle-csv PATH``
(or ``FakeSpotifyServer(catalogue=FakeCatalogue.from_kaggle_csv(PATH))``) serves the tracks of
a Kaggle-shaped CSV, e.g. the synthetic catalogue's, so the platform's own track ids resolve.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import re
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

APP_MODES = ("extended", "dev_2024", "dev_2026")
DEFAULT_CLIENT_ID = "fake-spotify-client-id"
DEFAULT_CLIENT_SECRET = "fake-spotify-client-secret"

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_MARKETS = ["AD", "AR", "AT", "AU", "BE", "CA", "DE", "ES", "FR", "GB", "JP", "SE", "US"]
_WEB = "https://open.spotify.com"
_API = "https://api.spotify.com/v1"


def fake_id(label: str) -> str:
    """A stable 22-character base62 id (the shape of a Spotify id) derived from ``label``."""
    number = int.from_bytes(hashlib.sha256(label.encode()).digest()[:17], "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


# -- objects in the shapes of the recorded fixtures ------------------------------------------


def simple_artist(artist_id: str, name: str) -> dict[str, Any]:
    return {
        "external_urls": {"spotify": f"{_WEB}/artist/{artist_id}"},
        "href": f"{_API}/artists/{artist_id}",
        "id": artist_id,
        "name": name,
        "type": "artist",
        "uri": f"spotify:artist:{artist_id}",
    }


def artist_object(artist_id: str, name: str, *, genres: list[str], popularity: int, followers: int) -> dict[str, Any]:
    image = "https://i.scdn.co/image/" + hashlib.sha1(artist_id.encode()).hexdigest()
    return {
        **simple_artist(artist_id, name),
        "followers": {"href": None, "total": followers},
        "genres": list(genres),
        "images": [{"height": 640, "url": image, "width": 640}],
        "popularity": popularity,
    }


def track_object(
    track_id: str,
    name: str,
    artists: list[tuple[str, str]],
    *,
    album_id: str,
    album_name: str,
    release_date: str = "2004-06-07",
    duration_ms: int = 222_075,
    explicit: bool = False,
    popularity: int = 50,
    isrc: str = "USIR20400274",
    track_number: int = 1,
) -> dict[str, Any]:
    credited = [simple_artist(i, n) for i, n in artists]
    return {
        "album": {
            "album_type": "album",
            "artists": credited[:1],
            "available_markets": list(_MARKETS),
            "external_urls": {"spotify": f"{_WEB}/album/{album_id}"},
            "href": f"{_API}/albums/{album_id}",
            "id": album_id,
            "images": [{"height": 640, "url": f"https://i.scdn.co/image/{album_id}", "width": 640}],
            "name": album_name,
            "release_date": release_date,
            "release_date_precision": "day" if len(release_date) == 10 else "year",
            "total_tracks": 12,
            "type": "album",
            "uri": f"spotify:album:{album_id}",
        },
        "artists": credited,
        "available_markets": list(_MARKETS),
        "disc_number": 1,
        "duration_ms": duration_ms,
        "explicit": explicit,
        "external_ids": {"isrc": isrc},
        "external_urls": {"spotify": f"{_WEB}/track/{track_id}"},
        "href": f"{_API}/tracks/{track_id}",
        "id": track_id,
        "is_local": False,
        "name": name,
        "popularity": popularity,
        "preview_url": f"https://p.scdn.co/mp3-preview/{hashlib.sha1(track_id.encode()).hexdigest()}",
        "track_number": track_number,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
    }


def audio_features_object(track_id: str, duration_ms: int, values: Mapping[str, float]) -> dict[str, Any]:
    return {
        "danceability": values["danceability"],
        "energy": values["energy"],
        "key": int(values["key"]),
        "loudness": values["loudness"],
        "mode": int(values["mode"]),
        "speechiness": values["speechiness"],
        "acousticness": values["acousticness"],
        "instrumentalness": values["instrumentalness"],
        "liveness": values["liveness"],
        "valence": values["valence"],
        "tempo": values["tempo"],
        "type": "audio_features",
        "id": track_id,
        "uri": f"spotify:track:{track_id}",
        "track_href": f"{_API}/tracks/{track_id}",
        "analysis_url": f"{_API}/audio-analysis/{track_id}",
        "duration_ms": duration_ms,
        "time_signature": int(values["time_signature"]),
    }


# Real ids and names from the recorded fixtures, so a check can ask for a track that exists.
MR_BRIGHTSIDE_ID = "3n3Ppam7vgaVa1iaRUc9Lp"
THE_KILLERS_ID = "0C0XlULifJtAgn6ZNCW2eu"


@dataclass
class FakeCatalogue:
    """What the fake knows: full Track / Artist / AudioFeatures objects by id."""

    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    artists: dict[str, dict[str, Any]] = field(default_factory=dict)
    audio_features: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_track(self, track: dict[str, Any], features: dict[str, Any] | None = None) -> None:
        self.tracks[track["id"]] = track
        if features is not None:
            self.audio_features[track["id"]] = features

    def add_artist(self, artist: dict[str, Any]) -> None:
        self.artists[artist["id"]] = artist

    @classmethod
    def generated(cls, n_tracks: int = 160, n_artists: int = 40) -> FakeCatalogue:
        """A deterministic catalogue big enough to need several batches (> 100 tracks)."""
        catalogue = cls()
        killers = artist_object(
            THE_KILLERS_ID, "The Killers", genres=["modern rock", "rock"], popularity=81, followers=7_400_000
        )
        catalogue.add_artist(killers)
        hot_fuss = "4OHNH3sDzIxnmUADXzv2kT"
        for track_id, name, duration, number in (
            (MR_BRIGHTSIDE_ID, "Mr. Brightside", 222_200, 2),
            ("3twNvmDtFQtAd5gMKedhLD", "Somebody Told Me", 197_280, 4),
        ):
            track = track_object(
                track_id,
                name,
                [(THE_KILLERS_ID, "The Killers")],
                album_id=hot_fuss,
                album_name="Hot Fuss (Deluxe Version)",
                duration_ms=duration,
                popularity=73,
                track_number=number,
                isrc=f"GBFFP03000{50 + number}",
            )
            catalogue.add_track(track, audio_features_object(track_id, duration, _features_for(track_id)))
        genres = ["rock", "pop", "hip hop", "electronic", "jazz", "metal", "indie", "folk"]
        artist_ids = []
        for a in range(n_artists):
            artist_id = fake_id(f"artist-{a}")
            artist_ids.append(artist_id)
            catalogue.add_artist(
                artist_object(
                    artist_id,
                    f"Fake Artist {a:02d}",
                    genres=[genres[a % len(genres)], genres[(a + 3) % len(genres)]],
                    popularity=(a * 7) % 101,
                    followers=1000 * (a + 1),
                )
            )
        for t in range(n_tracks):
            track_id = fake_id(f"track-{t}")
            main = t % n_artists
            credits = [(artist_ids[main], f"Fake Artist {main:02d}")]
            if t % 5 == 0:  # some tracks have a featured artist
                other = (main + 1) % n_artists
                credits.append((artist_ids[other], f"Fake Artist {other:02d}"))
            duration = 150_000 + (t * 7919) % 150_000
            track = track_object(
                track_id,
                f"Fake Song {t:03d}",
                credits,
                album_id=fake_id(f"album-{t // 10}"),
                album_name=f"Fake Album {t // 10:02d}",
                release_date=f"{1990 + t % 35}-0{1 + t % 9}-1{t % 10}",
                duration_ms=duration,
                explicit=t % 4 == 0,
                popularity=(t * 13) % 101,
                isrc=f"FAKE{t:08d}",
                track_number=1 + t % 10,
            )
            catalogue.add_track(track, audio_features_object(track_id, duration, _features_for(track_id)))
        return catalogue

    @classmethod
    def from_fixture_dir(cls, folder: Path | str) -> FakeCatalogue:
        """The real objects of the spotify-web-api-java fixtures (``../shared/data/api-fixtures/...``)."""
        folder = Path(folder)

        def load(name: str) -> Any:
            return json.loads((folder / name).read_text(encoding="utf-8"))

        catalogue = cls()
        for track in [*load("GetSeveralTracksRequest.json")["tracks"], load("GetTrackRequest.json")]:
            catalogue.add_track(track)
        for artist in [*load("GetSeveralArtistsRequest.json")["artists"], load("GetArtistRequest.json")]:
            catalogue.add_artist(artist)
        for features in [
            *load("GetAudioFeaturesForSeveralTracksRequest.json")["audio_features"],
            load("GetAudioFeaturesForTrackRequest.json"),
        ]:
            catalogue.audio_features[features["id"]] = features
        return catalogue

    @classmethod
    def from_kaggle_csv(cls, path: Path | str, *, keep_known: bool = True) -> FakeCatalogue:
        """The tracks of a Kaggle-shaped CSV (the real file or the synthetic one), served as Spotify would.

        Every distinct ``track_id`` becomes a track with its Kaggle name, artists, album,
        duration, explicit flag and popularity; its audio features are :func:`_features_for`
        the id, *not* the Kaggle values, so a test can tell which source a value came from.
        Artists get a stable id derived from their name (``fake_id("artist:" + name)``), the
        genres of the tracks they lead (``track_genre``, in first-seen order) and the highest
        popularity of those tracks. ``keep_known`` also keeps Mr. Brightside and The Killers
        (the ids ``check-apis`` probes).
        """
        catalogue = cls.generated(n_tracks=0, n_artists=0) if keep_known else cls()
        artist_genres: dict[str, list[str]] = {}
        artist_popularity: dict[str, int] = {}
        artist_names: dict[str, str] = {}
        with Path(path).open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                track_id = (row.get("track_id") or "").strip()
                names = [n.strip() for n in (row.get("artists") or "").split(";") if n.strip()]
                if not _SPOTIFY_ID.match(track_id) or not names or not (row.get("track_name") or "").strip():
                    continue  # the fake serves what Spotify could serve; broken rows are the loader's business
                credits = [(fake_id("artist:" + name), name) for name in names]
                lead_id = credits[0][0]
                artist_names.update(dict(credits))
                genre = (row.get("track_genre") or "").strip()
                genres = artist_genres.setdefault(lead_id, [])
                if genre and genre not in genres:
                    genres.append(genre)
                popularity = int(float(row.get("popularity") or 0))
                artist_popularity[lead_id] = max(artist_popularity.get(lead_id, 0), popularity)
                if track_id in catalogue.tracks:
                    continue  # the same track listed under another genre
                album_name = (row.get("album_name") or "").strip() or "Single"
                duration = int(float(row.get("duration_ms") or 0))
                catalogue.add_track(
                    track_object(
                        track_id,
                        row["track_name"].strip(),
                        credits,
                        album_id=fake_id("album:" + album_name),
                        album_name=album_name,
                        duration_ms=duration,
                        explicit=(row.get("explicit") or "").strip().lower() in ("true", "1"),
                        popularity=popularity,
                        isrc="FAKE" + hashlib.sha1(track_id.encode()).hexdigest()[:8].upper(),
                    ),
                    audio_features_object(track_id, duration, _features_for(track_id)),
                )
        for artist_id, name in artist_names.items():
            catalogue.add_artist(
                artist_object(
                    artist_id,
                    name,
                    genres=artist_genres.get(artist_id, []),
                    popularity=artist_popularity.get(artist_id, 0),
                    followers=1000 + int(hashlib.sha1(artist_id.encode()).hexdigest()[:6], 16),
                )
            )
        return catalogue


def _features_for(track_id: str) -> dict[str, float]:
    """Deterministic, valid audio features derived from the id."""
    digest = hashlib.sha256(track_id.encode()).digest()
    unit = [b / 255 for b in digest[:8]]
    return {
        "danceability": round(unit[0], 3),
        "energy": round(unit[1], 3),
        "speechiness": round(unit[2] * 0.3, 4),
        "acousticness": round(unit[3], 5),
        "instrumentalness": round(unit[4] ** 4, 6),
        "liveness": round(unit[5] * 0.6, 4),
        "valence": round(unit[6], 3),
        "tempo": round(60 + unit[7] * 120, 3),
        "loudness": round(-2 - unit[0] * 20, 3),
        "key": digest[8] % 12,
        "mode": digest[9] % 2,
        "time_signature": 3 + digest[10] % 3,
    }


# -- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    status: int
    authorized: bool


@dataclass
class _ScriptedFailure:
    status: int
    retry_after: float | None
    remaining: int


class FakeSpotifyServer:
    """Context manager running the fake on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(
        self,
        mode: str = "extended",
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_ttl_s: float = 3600,
        catalogue: FakeCatalogue | None = None,
        port: int = 0,
    ) -> None:
        self.mode = mode
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self.catalogue = catalogue or FakeCatalogue.generated()
        self._port = port
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self._failures: list[_ScriptedFailure] = []
        self.requests: list[RecordedRequest] = []
        self.token_requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in APP_MODES:
            raise ValueError(f"app mode must be one of {', '.join(APP_MODES)}, got {value!r}")
        self._mode = value

    def start(self) -> FakeSpotifyServer:
        handler = type("BoundSpotifyHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        # A short poll interval keeps stop() (and so every test using the fake) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-spotify", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeSpotifyServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake Spotify server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def accounts_root(self) -> str:
        return self.url

    @property
    def api_root(self) -> str:
        return self.url + "/v1"

    def env(self) -> dict[str, str]:
        """The environment variables that point the platform at this fake."""
        return {
            "SPOTIFY_CLIENT_ID": self.client_id,
            "SPOTIFY_CLIENT_SECRET": self.client_secret,
            "SPOTIFY_API_ROOT": self.api_root,
            "SPOTIFY_ACCOUNTS_ROOT": self.accounts_root,
        }

    # -- scripting --------------------------------------------------------------------------
    def rate_limit_next(self, count: int = 1, retry_after: float = 1) -> None:
        """The next ``count`` API requests get 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._failures.append(_ScriptedFailure(429, retry_after, count))

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next ``count`` API requests get ``status`` (a server error by default)."""
        with self._lock:
            self._failures.append(_ScriptedFailure(status, None, count))

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (the next API call gets 401)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def api_requests(self, path_prefix: str = "/v1") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    # -- used by the handler ----------------------------------------------------------------
    def _issue_token(self) -> str:
        token = "BQ" + secrets.token_urlsafe(40)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self.token_requests += 1
        return token

    def _token_state(self, token: str | None) -> str:
        if not token:
            return "missing"
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return "invalid"
        return "expired" if time.monotonic() >= expiry else "valid"

    def _next_failure(self) -> _ScriptedFailure | None:
        with self._lock:
            while self._failures and self._failures[0].remaining <= 0:
                self._failures.pop(0)
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.remaining -= 1
            return failure

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _ApiError(Exception):
    def __init__(self, status: int, message: str | None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status}
        if self.message is not None:
            error["message"] = self.message
        return {"error": error}


# Endpoints withdrawn per app mode: Dec 2024 (no message in the 403 body) and Feb/Mar 2026 ("Forbidden").
_WITHDRAWN_2024 = {"audio-features", "recommendations", "related-artists"}
_WITHDRAWN_2026 = {"tracks-batch", "artists-batch", "top-tracks"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSpotifyServer
    server_version = "FakeSpotify/1.0"
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle + delayed ACK add ~40 ms a request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests read fake.requests instead

    # -- plumbing ---------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _params(self) -> dict[str, str]:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        return {k: v[-1] for k, v in query.items()}

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
        if path != "/api/token":
            self._send_json(404, {"error": {"status": 404, "message": "Service not found"}})
            return
        status, payload = self._token(form)
        self.fake._record(RecordedRequest("POST", path, {}, status, False))
        self._send_json(status, payload)

    def _token(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = _basic_credentials(self.headers.get("Authorization"))
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant_type parameter is missing"}
        if client_id != self.fake.client_id:
            return 400, {"error": "invalid_client", "error_description": "Invalid client"}
        if client_secret != self.fake.client_secret:
            return 400, {"error": "invalid_client", "error_description": "Invalid client secret"}
        token = self.fake._issue_token()
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.fake.token_ttl_s)}

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        params = self._params()
        authorized = False
        try:
            authorized = self._authorize()
            failure = self.fake._next_failure()
            if failure is not None:
                headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
                message = "API rate limit exceeded" if failure.status == 429 else "Service unavailable"
                raise _ApiError(failure.status, message, headers)
            status, payload, headers = 200, self._route(path, params), {}
        except _ApiError as error:
            status, payload, headers = error.status, error.body(), error.headers
        self.fake._record(RecordedRequest("GET", path, params, status, authorized))
        self._send_json(status, payload, headers)

    def _authorize(self) -> bool:
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        state = self.fake._token_state(token)
        if state == "missing":
            raise _ApiError(401, "No token provided")
        if state == "invalid":
            raise _ApiError(401, "Invalid access token")
        if state == "expired":
            raise _ApiError(401, "The access token expired")
        return True

    # -- routing ----------------------------------------------------------------------------
    def _route(self, path: str, params: Mapping[str, str]) -> Any:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v1":
            raise _ApiError(404, "Service not found")
        parts = parts[1:]
        catalogue = self.fake.catalogue
        match parts:
            case ["tracks"]:
                self._require("tracks-batch")
                ids = self._ids(params, limit=50)
                return {"tracks": [self._track(catalogue.tracks.get(i), batch=True) for i in ids]}
            case ["tracks", track_id]:
                return self._track(self._single(catalogue.tracks, track_id), batch=False)
            case ["artists"]:
                self._require("artists-batch")
                ids = self._ids(params, limit=50)
                return {"artists": [self._artist(catalogue.artists.get(i)) for i in ids]}
            case ["artists", artist_id]:
                return self._artist(self._single(catalogue.artists, artist_id))
            case ["artists", artist_id, "related-artists"]:
                self._require("related-artists")
                self._single(catalogue.artists, artist_id)
                others = [a for i, a in catalogue.artists.items() if i != artist_id][:20]
                return {"artists": [self._artist(a) for a in others]}
            case ["artists", artist_id, "top-tracks"]:
                self._require("top-tracks")
                self._single(catalogue.artists, artist_id)
                tracks = [t for t in catalogue.tracks.values() if any(a["id"] == artist_id for a in t["artists"])]
                return {"tracks": [self._track(t, batch=True) for t in tracks[:10]]}
            case ["audio-features"]:
                self._require("audio-features")
                ids = self._ids(params, limit=100)
                return {"audio_features": [catalogue.audio_features.get(i) for i in ids]}
            case ["audio-features", track_id]:
                self._require("audio-features")
                return self._single(catalogue.audio_features, track_id)
            case ["recommendations"]:
                self._require("recommendations")
                limit = self._int(params, "limit", default=20, low=1, high=100)
                tracks = list(catalogue.tracks.values())[:limit]
                return {"seeds": [], "tracks": [self._track(t, batch=True) for t in tracks]}
            case ["search"]:
                return self._search(params)
        raise _ApiError(404, "Service not found")

    def _require(self, capability: str) -> None:
        mode = self.fake.mode
        if mode in ("dev_2024", "dev_2026") and capability in _WITHDRAWN_2024:
            raise _ApiError(403, None)  # Dec 2024: a bare {"error": {"status": 403}}
        if mode == "dev_2026" and capability in _WITHDRAWN_2026:
            raise _ApiError(403, "Forbidden")

    @staticmethod
    def _ids(params: Mapping[str, str], *, limit: int) -> list[str]:
        ids = [i for i in params.get("ids", "").split(",") if i]
        if not ids:
            raise _ApiError(400, "invalid id")
        if len(ids) > limit:
            raise _ApiError(400, "Too many ids requested")
        if any(not _SPOTIFY_ID.match(i) for i in ids):
            raise _ApiError(400, "invalid id")
        return ids

    @staticmethod
    def _single(objects: Mapping[str, Any], object_id: str) -> Any:
        if not _SPOTIFY_ID.match(object_id):
            raise _ApiError(400, "invalid id")
        if object_id not in objects:
            raise _ApiError(404, "non existing id")
        return objects[object_id]

    @staticmethod
    def _int(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _ApiError(400, f"Invalid {name}") from None
        if not low <= value <= high:
            raise _ApiError(400, f"Invalid {name}")
        return value

    # -- shapes per app mode ----------------------------------------------------------------
    def _track(self, track: dict[str, Any] | None, *, batch: bool) -> dict[str, Any] | None:
        if track is None:
            return None
        out = json.loads(json.dumps(track))
        mode = self.fake.mode
        if mode != "extended" and batch:
            out["preview_url"] = None  # Nov 2024: no preview_url in multi-get answers
        if mode == "dev_2026":
            for key in ("popularity", "available_markets", "linked_from"):
                out.pop(key, None)
            out.get("album", {}).pop("available_markets", None)
        return out

    def _artist(self, artist: dict[str, Any] | None) -> dict[str, Any] | None:
        if artist is None:
            return None
        out = json.loads(json.dumps(artist))
        if self.fake.mode == "dev_2026":
            for key in ("popularity", "followers", "genres"):
                out.pop(key, None)
        return out

    def _search(self, params: Mapping[str, str]) -> dict[str, Any]:
        query = params.get("q", "").strip()
        if not query:
            raise _ApiError(400, "No search query")
        types = [t for t in params.get("type", "").split(",") if t]
        if not types or any(t not in ("track", "artist") for t in types):
            raise _ApiError(400, "Missing parameter type")
        dev_2026 = self.fake.mode == "dev_2026"
        limit = self._int(params, "limit", default=5 if dev_2026 else 20, low=1, high=10 if dev_2026 else 50)
        offset = self._int(params, "offset", default=0, low=0, high=1000)
        filters, words = _parse_query(query)
        result: dict[str, Any] = {}
        catalogue = self.fake.catalogue
        if "track" in types:
            found = [t for t in catalogue.tracks.values() if _track_matches(t, filters, words)]
            items = [self._track(t, batch=True) for t in found[offset : offset + limit]]
            result["tracks"] = self._paging("track", query, items, len(found), limit, offset)
        if "artist" in types:
            found = [a for a in catalogue.artists.values() if _artist_matches(a, filters, words)]
            items = [self._artist(a) for a in found[offset : offset + limit]]
            result["artists"] = self._paging("artist", query, items, len(found), limit, offset)
        return result

    def _paging(self, kind: str, query: str, items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
        def href(at: int) -> str:
            query_string = urlencode({"query": query, "type": kind, "offset": at, "limit": limit}, quote_via=quote)
            return f"{self.fake.api_root}/search?{query_string}"

        return {
            "href": href(offset),
            "items": items,
            "limit": limit,
            "next": href(offset + limit) if offset + limit < total else None,
            "offset": offset,
            "previous": href(max(0, offset - limit)) if offset > 0 else None,
            "total": total,
        }


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None, None
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret


_FIELD = re.compile(r'(\w+):(?:"([^"]*)"|(\S+))')


def _parse_query(query: str) -> tuple[dict[str, str], list[str]]:
    """``track:"Mr. Brightside" artist:Killers rock`` -> field filters and free words (lower case)."""
    filters = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).lower()
        for m in _FIELD.finditer(query)
    }
    rest = _FIELD.sub(" ", query)
    return filters, [w.lower() for w in rest.replace('"', " ").split()]


def _names(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(o.get("name", "")).lower() for o in objects]


def _track_matches(track: Mapping[str, Any], filters: Mapping[str, str], words: list[str]) -> bool:
    name = str(track.get("name", "")).lower()
    artists = _names(track.get("artists", []))
    if "track" in filters and filters["track"] not in name:
        return False
    if "artist" in filters and not any(filters["artist"] in a for a in artists):
        return False
    if "album" in filters and filters["album"] not in str(track.get("album", {}).get("name", "")).lower():
        return False
    haystack = " ".join([name, *artists])
    return all(w in haystack for w in words)


def _artist_matches(artist: Mapping[str, Any], filters: Mapping[str, str], words: list[str]) -> bool:
    name = str(artist.get("name", "")).lower()
    if "artist" in filters and filters["artist"] not in name:
        return False
    if "track" in filters:
        return False
    return all(w in name for w in words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Spotify Web API on 127.0.0.1.")
    parser.add_argument("--mode", choices=APP_MODES, default="extended")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--token-ttl", type=float, default=3600, help="token lifetime in seconds")
    parser.add_argument("--fixtures", type=Path, help="serve the spotify-web-api-java fixture objects instead")
    parser.add_argument(
        "--kaggle-csv",
        type=Path,
        help="serve the tracks of a Kaggle-shaped CSV (e.g. the synthetic one under data/external/synthetic/kaggle/)",
    )
    args = parser.parse_args(argv)
    catalogue = None
    if args.fixtures:
        catalogue = FakeCatalogue.from_fixture_dir(args.fixtures)
    elif args.kaggle_csv:
        catalogue = FakeCatalogue.from_kaggle_csv(args.kaggle_csv)
    server = FakeSpotifyServer(
        args.mode,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl_s=args.token_ttl,
        catalogue=catalogue,
        port=args.port,
    )
    with server:
        print(f"fake Spotify ({args.mode}) listening on {server.url}; Ctrl-C to stop. Point the platform at it:")
        for name, value in server.env().items():
            print(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()  # the banner must reach a pipe (a test or a script reading it) at once
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
