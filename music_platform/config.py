"""Settings read from the environment (the public env vars in PRODUCT.md).

Everything configurable lives here so that assets, the CLI and the service agree on one
reading of the environment. Secrets are kept as plain strings but never logged: use
``Settings.redacted()`` for anything that is printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

TARGETS = ("duckdb", "postgres", "snowflake")
SOURCE_MODES = ("auto", "synthetic", "real")

DEFAULT_LASTFM_API_ROOT = "https://ws.audioscrobbler.com/2.0/"
DEFAULT_SPOTIFY_API_ROOT = "https://api.spotify.com/v1"
DEFAULT_SPOTIFY_ACCOUNTS_ROOT = "https://accounts.spotify.com"
# Genre tags asked for when LASTFM_TAGS is not set (the spec asks for at least six).
DEFAULT_LASTFM_TAGS = ("rock", "pop", "hip-hop", "electronic", "jazz", "metal", "indie", "folk")

_SECRET_FIELDS = {"lastfm_api_key", "spotify_client_secret", "snowflake_password"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the env var to fix."""


def environment(dotenv_file: Path = Path(".env")) -> dict[str, str]:
    """The settings every entry point reads: the process environment over the ``.env`` file of the
    current directory (a variable set in the environment wins over the file)."""
    from dotenv import dotenv_values

    from_file = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None} if dotenv_file.is_file() else {}
    return {**from_file, **os.environ}


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    target: str = "duckdb"
    data_dir: Path = Path("data")
    duckdb_path: Path | None = None
    postgres_url: str | None = None
    snowflake_account: str | None = None
    snowflake_user: str | None = None
    snowflake_password: str | None = None
    snowflake_database: str | None = None
    snowflake_schema: str | None = None
    snowflake_warehouse: str | None = None
    snowflake_role: str | None = None
    snowflake_host: str | None = None
    snowflake_port: int | None = None
    snowflake_protocol: str | None = None
    lastfm_api_key: str | None = None
    lastfm_users: tuple[str, ...] = ()
    lastfm_tags: tuple[str, ...] = DEFAULT_LASTFM_TAGS
    lastfm_api_root: str = DEFAULT_LASTFM_API_ROOT
    spotify_client_id: str | None = None
    spotify_client_secret: str | None = None
    spotify_api_root: str = DEFAULT_SPOTIFY_API_ROOT
    spotify_accounts_root: str = DEFAULT_SPOTIFY_ACCOUNTS_ROOT
    source_mode: str = "auto"
    synthetic_users: int = 2000
    synthetic_seed: int = 42
    partitions_start_date: str = "2025-01-01"
    alert_webhook: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = environment() if env is None else dict(env)
        target = env.get("MUSIC_PLATFORM_TARGET", "duckdb").strip().lower() or "duckdb"
        if target not in TARGETS:
            raise ConfigError(f"MUSIC_PLATFORM_TARGET must be one of {', '.join(TARGETS)}, got {target!r}")
        source_mode = env.get("MUSIC_PLATFORM_SOURCE", "auto").strip().lower() or "auto"
        if source_mode not in SOURCE_MODES:
            raise ConfigError(f"MUSIC_PLATFORM_SOURCE must be one of {', '.join(SOURCE_MODES)}, got {source_mode!r}")
        data_dir = Path(env.get("MUSIC_PLATFORM_DATA_DIR") or "data")
        duckdb_path = env.get("MUSIC_PLATFORM_DUCKDB_PATH")
        return cls(
            target=target,
            data_dir=data_dir,
            duckdb_path=Path(duckdb_path) if duckdb_path else None,
            postgres_url=env.get("MUSIC_PLATFORM_POSTGRES_URL") or None,
            snowflake_account=env.get("SNOWFLAKE_ACCOUNT") or None,
            snowflake_user=env.get("SNOWFLAKE_USER") or None,
            snowflake_password=env.get("SNOWFLAKE_PASSWORD") or None,
            snowflake_database=env.get("SNOWFLAKE_DATABASE") or None,
            snowflake_schema=env.get("SNOWFLAKE_SCHEMA") or None,
            snowflake_warehouse=env.get("SNOWFLAKE_WAREHOUSE") or None,
            snowflake_role=env.get("SNOWFLAKE_ROLE") or None,
            snowflake_host=env.get("SNOWFLAKE_HOST") or None,
            snowflake_port=_int(env, "SNOWFLAKE_PORT", 0) or None,
            snowflake_protocol=env.get("SNOWFLAKE_PROTOCOL") or None,
            lastfm_api_key=env.get("LASTFM_API_KEY") or None,
            lastfm_users=_csv(env.get("LASTFM_USERS")),
            lastfm_tags=_csv(env.get("LASTFM_TAGS")) or DEFAULT_LASTFM_TAGS,
            lastfm_api_root=env.get("LASTFM_API_ROOT") or DEFAULT_LASTFM_API_ROOT,
            spotify_client_id=env.get("SPOTIFY_CLIENT_ID") or None,
            spotify_client_secret=env.get("SPOTIFY_CLIENT_SECRET") or None,
            spotify_api_root=env.get("SPOTIFY_API_ROOT") or DEFAULT_SPOTIFY_API_ROOT,
            spotify_accounts_root=env.get("SPOTIFY_ACCOUNTS_ROOT") or DEFAULT_SPOTIFY_ACCOUNTS_ROOT,
            source_mode=source_mode,
            synthetic_users=_int(env, "MUSIC_PLATFORM_SYNTHETIC_USERS", 2000),
            synthetic_seed=_int(env, "MUSIC_PLATFORM_SEED", 42),
            partitions_start_date=env.get("MUSIC_PLATFORM_PARTITIONS_START") or "2025-01-01",
            alert_webhook=env.get("MUSIC_PLATFORM_ALERT_WEBHOOK") or None,
        )

    # -- derived settings -------------------------------------------------------------
    @property
    def resolved_duckdb_path(self) -> Path:
        return self.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def external_dir(self) -> Path:
        """Audit trail of every raw landing (timestamped JSON/CSV)."""
        return self.data_dir / "external"

    @property
    def kaggle_drop_dir(self) -> Path:
        return self.external_dir / "kaggle"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def lastfm_configured(self) -> bool:
        return bool(self.lastfm_api_key)

    @property
    def spotify_configured(self) -> bool:
        return bool(self.spotify_client_id and self.spotify_client_secret)

    @property
    def uses_synthetic_source(self) -> bool:
        """Synthetic data only where no real source is configured (never mixed silently)."""
        if self.source_mode == "synthetic":
            return True
        if self.source_mode == "real":
            return False
        return not (self.lastfm_configured or self.spotify_configured)

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict[str, object]:
        """The settings as printable values, secrets masked."""
        out: dict[str, object] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            elif f.name == "postgres_url" and value:
                value = redact_url(value)
            out[f.name] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password of a URL such as postgresql://user:secret@host/db."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def get_settings() -> Settings:
    return Settings.from_env()
