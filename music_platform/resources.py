"""Dagster resources: the warehouse, the sources and the artifact store.

Resources are thin: they hold configuration (secrets through ``EnvVar`` so the UI never shows
them) and hand out plain objects from the Dagster-free packages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import dagster as dg

from music_platform.config import Settings
from music_platform.warehouse import Warehouse
from music_platform.warehouse.factory import open_warehouse

if TYPE_CHECKING:
    from dagster_snowflake import SnowflakeResource


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse of ``target`` (duckdb, postgres or snowflake); a fresh connection per operation.

    Every target is configured here; secrets (the PostgreSQL URL, the Snowflake password) come
    as ``EnvVar`` references, so the UI never shows them. Snowflake connections are opened by
    dagster-snowflake's ``SnowflakeResource`` (its public ``get_connection``) with these fields.
    """

    target: str = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    postgres_url: Optional[str] = None
    snowflake_account: Optional[str] = None
    snowflake_user: Optional[str] = None
    snowflake_password: Optional[str] = None
    snowflake_database: Optional[str] = None
    snowflake_schema: Optional[str] = None
    snowflake_warehouse: Optional[str] = None
    snowflake_role: Optional[str] = None
    # A local fakesnow server (tests, the demo on snowflake): host, port and http.
    snowflake_host: Optional[str] = None
    snowflake_port: Optional[int] = None
    snowflake_protocol: Optional[str] = None

    def snowflake_connect_args(self) -> dict[str, Any]:
        from music_platform.warehouse.snowflake_warehouse import snowflake_connect_args

        return snowflake_connect_args(
            account=self.snowflake_account,
            user=self.snowflake_user,
            password=self.snowflake_password,
            database=self.snowflake_database,
            schema=self.snowflake_schema,
            warehouse=self.snowflake_warehouse,
            role=self.snowflake_role,
            host=self.snowflake_host,
            port=self.snowflake_port,
            protocol=self.snowflake_protocol,
        )

    def snowflake_resource(self) -> SnowflakeResource:
        """dagster-snowflake's resource for these settings, with the session options every
        warehouse connection needs (``SESSION_OPTIONS``: autocommit, ``?`` binding, UTC)."""
        # Imported here: dagster-snowflake brings Snowpark (seconds of imports) that the other
        # targets never need.
        from dagster_snowflake import SnowflakeResource

        from music_platform.warehouse.snowflake_warehouse import SESSION_OPTIONS, SESSION_PARAMETERS

        args = self.snowflake_connect_args()
        endpoint = {key: args[key] for key in ("host", "port", "protocol") if key in args}
        return SnowflakeResource(
            account=args["account"],
            user=args["user"],
            password=args["password"],
            database=args["database"],
            schema_=args.get("schema"),
            warehouse=args.get("warehouse"),
            role=args.get("role"),
            autocommit=SESSION_OPTIONS["autocommit"],
            paramstyle=SESSION_OPTIONS["paramstyle"],
            login_timeout=SESSION_OPTIONS["login_timeout"],
            client_session_keep_alive=SESSION_OPTIONS["client_session_keep_alive"],
            additional_snowflake_connection_args={"session_parameters": dict(SESSION_PARAMETERS), **endpoint},
        )

    def get_warehouse(self) -> Warehouse:
        if self.target == "snowflake":
            return open_warehouse(
                "snowflake",
                snowflake_args=self.snowflake_connect_args(),
                snowflake_connection=self.snowflake_resource().get_connection,
            )
        return open_warehouse(self.target, duckdb_path=self.duckdb_path, postgres_url=self.postgres_url)


class ArtifactStoreResource(dg.ConfigurableResource):
    """Where files live: the raw audit trail (external/) and model versions (models/)."""

    data_dir: str = "data"

    @property
    def external_dir(self) -> Path:
        return Path(self.data_dir) / "external"

    @property
    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"


class LastfmResource(dg.ConfigurableResource):
    """Last.fm: the real API when a key is configured, else the synthetic source."""

    use_synthetic: bool = True
    api_key: Optional[str] = None
    api_root: str = "https://ws.audioscrobbler.com/2.0/"
    users: list[str] = []
    tags: list[str] = []
    synthetic_users: int = 2000
    seed: int = 42
    requests_per_second: float = 5.0

    @property
    def source_label(self) -> str:
        return "synthetic" if self.use_synthetic else "lastfm"

    def get_client(self):
        """A client with the Last.fm method names (``get_recent_tracks_pages`` …)."""
        if self.use_synthetic:
            from music_platform.sources.synthetic.source import SyntheticLastfmSource

            return SyntheticLastfmSource(n_users=self.synthetic_users, seed=self.seed)
        if not self.api_key:
            raise dg.Failure(
                "Last.fm is the configured source but LASTFM_API_KEY is not set: set it, or unset "
                "MUSIC_PLATFORM_SOURCE=real to use the synthetic source.",
                allow_retries=False,
            )
        from music_platform.sources.lastfm.client import LastfmClient

        return LastfmClient(api_key=self.api_key, api_root=self.api_root, rate_limit_per_s=self.requests_per_second)

    def tracked_users(self, client) -> list[str]:
        return list(client.users) if self.use_synthetic else list(self.users)

    def genre_tags(self, client) -> list[str]:
        return list(client.tags) if self.use_synthetic else list(self.tags)


class KaggleResource(dg.ConfigurableResource):
    """The Kaggle Spotify Tracks drop folder, plus the synthetic catalogue's CSV where the
    listens are synthetic.

    Files dropped into the folder are loaded whatever the source mode (labelled 'kaggle'). The
    synthetic catalogue is added when the synthetic source is in use (its listeners play its
    tracks; labelled 'synthetic'); a drop-folder row wins over a synthetic one with the same id.
    """

    drop_dir: str = "data/external/kaggle"
    synthetic_allowed: bool = True
    synthetic_dir: str = "data/external/synthetic/kaggle"
    synthetic_users: int = 2000
    seed: int = 42

    def drop_files(self) -> list[Path]:
        from music_platform.sources.kaggle.loader import list_drop_files

        return list_drop_files(self.drop_dir)

    def resolve(self) -> tuple[list[Path], dict[str, str]]:
        """The files to load, drop-folder files first, and the source label of each (by file name)."""
        files = self.drop_files()
        labels = {path.name: "kaggle" for path in files}
        if self.synthetic_allowed:
            from music_platform.sources.synthetic.kaggle import synthetic_kaggle_csv

            target = Path(self.synthetic_dir) / f"spotify_tracks_seed{self.seed}_users{self.synthetic_users}.csv"
            if not target.exists():
                synthetic_kaggle_csv(target, n_users=self.synthetic_users, seed=self.seed)
            files.append(target)
            labels[target.name] = "synthetic"
        return files, labels


class SpotifyResource(dg.ConfigurableResource):
    """Spotify enrichment: used whenever SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET are set.

    Spotify has no synthetic stand-in and is not switched off by MUSIC_PLATFORM_SOURCE=synthetic:
    it only adds metadata to the tracks the other sources know, and its rows say
    ``source='spotify'``. Unconfigured, the Spotify raw tables stay empty (their values come
    from the Kaggle file instead).
    """

    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    api_root: str = "https://api.spotify.com/v1"
    accounts_root: str = "https://accounts.spotify.com"
    requests_per_second: float = 5.0
    # Where GET /tracks?ids= and /artists?ids= are withdrawn (development-mode apps since 2026),
    # at most this many ids are fetched one by one per asset and run; the rest wait for the next run.
    max_single_lookups: int = 200
    # Searches for Last.fm tracks that have no Spotify id, per run (one request each).
    max_searches_per_run: int = 50
    # Ids answered within this many days are not asked again.
    refetch_after_days: int = 30

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    def get_client(self):
        from music_platform.sources.spotify.client import SpotifyClient

        if not self.configured:
            raise dg.Failure(
                "Spotify is not configured: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET.", allow_retries=False
            )
        return SpotifyClient(
            self.client_id or "",
            self.client_secret or "",
            api_root=self.api_root,
            accounts_root=self.accounts_root,
            rate_limit_per_s=self.requests_per_second,
            max_single_lookups=self.max_single_lookups,
        )


def _secret(name: str, value: str | None):
    """A secret as an ``EnvVar`` reference (the UI never shows its value) when the process environment
    holds it; a value that came from the ``.env`` file only is passed as it is (in-process runs)."""
    if not value:
        return None
    return dg.EnvVar(name) if os.environ.get(name) == value else value


def build_resources(settings: Settings) -> dict[str, object]:
    """Resources for the given settings; secrets become EnvVar references."""
    from music_platform.transformation.project import dbt_cli_resource

    synthetic = settings.uses_synthetic_source
    return {
        "warehouse": WarehouseResource(
            target=settings.target,
            duckdb_path=str(settings.resolved_duckdb_path),
            postgres_url=_secret("MUSIC_PLATFORM_POSTGRES_URL", settings.postgres_url),
            snowflake_account=settings.snowflake_account,
            snowflake_user=settings.snowflake_user,
            snowflake_password=_secret("SNOWFLAKE_PASSWORD", settings.snowflake_password),
            snowflake_database=settings.snowflake_database,
            snowflake_schema=settings.snowflake_schema,
            snowflake_warehouse=settings.snowflake_warehouse,
            snowflake_role=settings.snowflake_role,
            snowflake_host=settings.snowflake_host,
            snowflake_port=settings.snowflake_port,
            snowflake_protocol=settings.snowflake_protocol,
        ),
        "artifacts": ArtifactStoreResource(data_dir=str(settings.data_dir)),
        "lastfm": LastfmResource(
            use_synthetic=synthetic,
            api_key=_secret("LASTFM_API_KEY", settings.lastfm_api_key),
            api_root=settings.lastfm_api_root,
            users=list(settings.lastfm_users),
            tags=list(settings.lastfm_tags),
            synthetic_users=settings.synthetic_users,
            seed=settings.synthetic_seed,
        ),
        "kaggle": KaggleResource(
            synthetic_allowed=synthetic,
            drop_dir=str(settings.kaggle_drop_dir),
            synthetic_dir=str(settings.external_dir / "synthetic" / "kaggle"),
            synthetic_users=settings.synthetic_users,
            seed=settings.synthetic_seed,
        ),
        "spotify": SpotifyResource(
            client_id=_secret("SPOTIFY_CLIENT_ID", settings.spotify_client_id),
            client_secret=_secret("SPOTIFY_CLIENT_SECRET", settings.spotify_client_secret),
            api_root=settings.spotify_api_root,
            accounts_root=settings.spotify_accounts_root,
        ),
        "dbt": dbt_cli_resource(settings),
    }
