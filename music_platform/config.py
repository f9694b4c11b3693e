"""Settings: the public env vars of PRODUCT.md, read once at the edge, typed and validated.

Every entry point (the CLI, the Dagster code location, the service) reads them the same way:
the process environment over the ``.env`` file of the current directory (``environment()``),
validated by pydantic-settings into one frozen ``Settings``. A malformed value is a
``ConfigError`` naming the variable and the form it expects (``SNOWFLAKE_PORT must be an
integer, got 'abc'``); the CLI shows it as one line. Nothing here writes the environment, and no
module reads it at import: ``music_platform.definitions.defs`` builds the code location from one
``Settings`` (``build_defs``).

Secrets are kept as plain strings but never logged: use ``Settings.redacted()`` for anything
that is printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TARGETS = ("duckdb", "postgres", "snowflake")
SOURCE_MODES = ("auto", "synthetic", "real")

DEFAULT_LASTFM_API_ROOT = "https://ws.audioscrobbler.com/2.0/"
DEFAULT_SPOTIFY_API_ROOT = "https://api.spotify.com/v1"
DEFAULT_SPOTIFY_ACCOUNTS_ROOT = "https://accounts.spotify.com"
# Genre tags asked for when LASTFM_TAGS is not set (the spec asks for at least six).
DEFAULT_LASTFM_TAGS = ("rock", "pop", "hip-hop", "electronic", "jazz", "metal", "indie", "folk")
# The first daily partition when neither MUSIC_PLATFORM_PARTITIONS_START nor a loaded data dir says.
DEFAULT_PARTITIONS_START = "2025-01-01"
# Written by `music-platform demo` in the data dir: the first day of listening it loaded, so the
# Dagster UI (`make dev`) shows the partitions the data covers without anyone setting anything.
PARTITIONS_FILE = "partitions.json"

_SECRET_FIELDS = {"lastfm_api_key", "spotify_client_secret", "snowflake_password"}

# What each kind of value must look like, for the error message.
_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "literal_error": None,  # pydantic's message lists the allowed values
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "greater_than_equal": None,
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the env var to fix."""


def environment(dotenv_file: Path = Path(".env")) -> dict[str, str]:
    """The settings every entry point reads: the process environment over the ``.env`` file of the
    current directory (a variable set in the environment wins over the file)."""
    from dotenv import dotenv_values

    from_file = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None} if dotenv_file.is_file() else {}
    return {**from_file, **os.environ}


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class Settings(BaseSettings):
    """The platform's configuration; field aliases are the public env var names."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
        env_ignore_empty=True,
        env_file=".env",
        env_file_encoding="utf-8",
    )

    target: Literal["duckdb", "postgres", "snowflake"] = Field("duckdb", alias="MUSIC_PLATFORM_TARGET")
    data_dir: Path = Field(Path("data"), alias="MUSIC_PLATFORM_DATA_DIR")
    duckdb_path: Path | None = Field(None, alias="MUSIC_PLATFORM_DUCKDB_PATH")
    postgres_url: str | None = Field(None, alias="MUSIC_PLATFORM_POSTGRES_URL")
    snowflake_account: str | None = Field(None, alias="SNOWFLAKE_ACCOUNT")
    snowflake_user: str | None = Field(None, alias="SNOWFLAKE_USER")
    snowflake_password: str | None = Field(None, alias="SNOWFLAKE_PASSWORD", repr=False)
    snowflake_database: str | None = Field(None, alias="SNOWFLAKE_DATABASE")
    snowflake_schema: str | None = Field(None, alias="SNOWFLAKE_SCHEMA")
    snowflake_warehouse: str | None = Field(None, alias="SNOWFLAKE_WAREHOUSE")
    snowflake_role: str | None = Field(None, alias="SNOWFLAKE_ROLE")
    snowflake_host: str | None = Field(None, alias="SNOWFLAKE_HOST")
    snowflake_port: int | None = Field(None, alias="SNOWFLAKE_PORT", ge=1, le=65535)
    snowflake_protocol: Literal["http", "https"] | None = Field(None, alias="SNOWFLAKE_PROTOCOL")
    lastfm_api_key: str | None = Field(None, alias="LASTFM_API_KEY", repr=False)
    lastfm_users: Annotated[tuple[str, ...], NoDecode] = Field((), alias="LASTFM_USERS")
    lastfm_tags: Annotated[tuple[str, ...], NoDecode] = Field(DEFAULT_LASTFM_TAGS, alias="LASTFM_TAGS")
    lastfm_api_root: str = Field(DEFAULT_LASTFM_API_ROOT, alias="LASTFM_API_ROOT")
    spotify_client_id: str | None = Field(None, alias="SPOTIFY_CLIENT_ID")
    spotify_client_secret: str | None = Field(None, alias="SPOTIFY_CLIENT_SECRET", repr=False)
    spotify_api_root: str = Field(DEFAULT_SPOTIFY_API_ROOT, alias="SPOTIFY_API_ROOT")
    spotify_accounts_root: str = Field(DEFAULT_SPOTIFY_ACCOUNTS_ROOT, alias="SPOTIFY_ACCOUNTS_ROOT")
    source_mode: Literal["auto", "synthetic", "real"] = Field("auto", alias="MUSIC_PLATFORM_SOURCE")
    synthetic_users: int = Field(2000, alias="MUSIC_PLATFORM_SYNTHETIC_USERS", ge=1)
    synthetic_seed: int = Field(42, alias="MUSIC_PLATFORM_SEED")
    # Resolved when the settings are read: MUSIC_PLATFORM_PARTITIONS_START, else the first day the
    # demo loaded into this data dir (PARTITIONS_FILE), else DEFAULT_PARTITIONS_START.
    partitions_start_date: str = Field(DEFAULT_PARTITIONS_START, alias="MUSIC_PLATFORM_PARTITIONS_START")
    # Whether MUSIC_PLATFORM_PARTITIONS_START was set (the demo moves an unset start to its data).
    partitions_start_configured: bool = Field(False, exclude=True)
    alert_webhook: str | None = Field(None, alias="MUSIC_PLATFORM_ALERT_WEBHOOK")
    # dbt through the warm server (music_platform/transformation/dbt_server.py), on Linux.
    dbt_server: bool = Field(True, alias="MUSIC_PLATFORM_DBT_SERVER")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``env`` (a mapping of env var names), by default ``environment()``:
        the process environment over ``.env``. A malformed value raises ``ConfigError``."""
        try:
            # No mapping: pydantic-settings reads the process environment, then ./.env.
            return cls() if env is None else cls.model_validate(dict(env))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, environment() if env is None else env)) from None

    # -- validation -----------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _unset_when_empty(cls, data: Any) -> Any:
        """An empty variable (``SNOWFLAKE_PORT=`` in .env) means "not set"; the partitions start
        falls back to what the data dir records."""
        if not isinstance(data, Mapping):
            return data
        data = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        configured = "MUSIC_PLATFORM_PARTITIONS_START" in data or "partitions_start_date" in data
        data.setdefault("partitions_start_configured", configured)
        if not configured:
            data_dir = Path(data.get("MUSIC_PLATFORM_DATA_DIR") or data.get("data_dir") or "data")
            recorded = recorded_partitions_start(data_dir)
            if recorded:
                data["MUSIC_PLATFORM_PARTITIONS_START"] = recorded
        return data

    @field_validator("target", "source_mode", "snowflake_protocol", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("lastfm_users", "lastfm_tags", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("lastfm_tags", mode="after")
    @classmethod
    def _default_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return value or DEFAULT_LASTFM_TAGS

    @field_validator("partitions_start_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
        return value

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

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (by field name), validated again."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        try:
            return type(self).model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, values)) from None

    def redacted(self) -> dict[str, object]:
        """The settings as printable values, secrets masked."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in _SECRET_FIELDS and value:
                value = "***"
            elif name == "postgres_url" and value:
                value = redact_url(value)
            out[name] = value
        return out


def _describe(exc: ValidationError, values: Mapping[str, Any]) -> str:
    """One sentence per bad variable: its name, what it must be, and what it was."""
    aliases = {name: field.alias or name for name, field in Settings.model_fields.items()}
    by_alias = {alias: name for name, alias in aliases.items()}
    parts = []
    for error in exc.errors():
        loc = str(error["loc"][0]) if error["loc"] else "?"
        variable = aliases.get(loc, loc) if loc not in by_alias else loc
        expected = _EXPECTED.get(error["type"])
        message = f"must be {expected}" if expected else error["msg"].replace("Input should be", "must be")
        message = message.replace("Value error, ", "")
        got = values.get(variable, values.get(by_alias.get(variable, ""), error.get("input")))
        parts.append(f"{variable} {message}, got {got!r}")
    return "; ".join(parts)


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
    """The settings of this process (environment over ``.env``), for the CLI's commands."""
    return Settings.from_env()


# -- where the partitions start --------------------------------------------------------
def recorded_partitions_start(data_dir: Path) -> str | None:
    """The first day of listening loaded into ``data_dir`` (recorded by the demo), if any."""
    path = Path(data_dir) / PARTITIONS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["start_date"]
        return date.fromisoformat(recorded).isoformat()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no data loaded here yet (or an unreadable file): the default applies


def record_partitions_start(data_dir: Path, first_day: date) -> str:
    """Record that ``data_dir`` holds listening from ``first_day`` on, keeping an earlier day
    already recorded (its partitions stay visible); written atomically. Returns the day kept."""
    earlier = recorded_partitions_start(data_dir)
    start = min(first_day.isoformat(), earlier) if earlier else first_day.isoformat()
    path = Path(data_dir) / PARTITIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"start_date": start, "written_by": "music-platform demo"}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return start


# -- the settings a code location is being built from -------------------------------------
_building: ContextVar[Settings | None] = ContextVar("music_platform_definitions_settings", default=None)


@contextmanager
def building_definitions(settings: Settings) -> Iterator[Settings]:
    """Within this block, ``definitions_settings()`` is ``settings``: the ``@dg.definitions``
    functions of ``music_platform/defs/`` build their assets from the one ``Settings`` the root
    (``music_platform.definitions.build_defs``) was given, since ``load_from_defs_folder`` takes
    no arguments to pass on."""
    token = _building.set(settings)
    try:
        yield settings
    finally:
        _building.reset(token)


def definitions_settings() -> Settings:
    """The ``Settings`` the code location is being built from (see ``building_definitions``)."""
    settings = _building.get()
    if settings is None:
        raise RuntimeError(
            "music_platform/defs/ is loaded through music_platform.definitions (defs() or build_defs(settings)), "
            "which passes the settings on"
        )
    return settings
