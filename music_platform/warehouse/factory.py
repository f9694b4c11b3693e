"""The one place that maps a target name (MUSIC_PLATFORM_TARGET) to a warehouse implementation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from music_platform.config import ConfigError, Settings
from music_platform.warehouse.base import Warehouse

if TYPE_CHECKING:
    from music_platform.warehouse.snowflake_warehouse import ConnectionFactory

TARGETS = ("duckdb", "postgres", "snowflake")


def open_warehouse(
    target: str,
    *,
    duckdb_path: str | Path | None = None,
    postgres_url: str | None = None,
    snowflake_args: Mapping[str, Any] | None = None,
    snowflake_connection: ConnectionFactory | None = None,
) -> Warehouse:
    """The warehouse of ``target`` from explicit values (``connect_warehouse`` passes the
    settings'; Dagster's ``WarehouseResource`` its fields and dagster-snowflake's connection)."""
    if target == "duckdb":
        from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

        if not duckdb_path:
            raise ConfigError("MUSIC_PLATFORM_TARGET=duckdb needs a DuckDB file (MUSIC_PLATFORM_DUCKDB_PATH)")
        return DuckDBWarehouse(duckdb_path)
    if target == "postgres":
        if not postgres_url:
            raise ConfigError("MUSIC_PLATFORM_TARGET=postgres needs MUSIC_PLATFORM_POSTGRES_URL")
        from music_platform.warehouse.postgres_warehouse import PostgresWarehouse

        return PostgresWarehouse(postgres_url)
    if target == "snowflake":
        from music_platform.warehouse.snowflake_warehouse import SnowflakeWarehouse

        if snowflake_args is None:
            raise ConfigError("MUSIC_PLATFORM_TARGET=snowflake needs the SNOWFLAKE_* settings")
        return SnowflakeWarehouse(dict(snowflake_args), connection_factory=snowflake_connection)
    raise ConfigError(f"MUSIC_PLATFORM_TARGET={target!r} is not a target: use one of {', '.join(TARGETS)}")


def connect_warehouse(settings: Settings) -> Warehouse:
    snowflake_args = None
    if settings.target == "snowflake":
        from music_platform.warehouse.snowflake_warehouse import connect_args_from_settings

        snowflake_args = connect_args_from_settings(settings)
    return open_warehouse(
        settings.target,
        duckdb_path=settings.resolved_duckdb_path,
        postgres_url=settings.postgres_url,
        snowflake_args=snowflake_args,
    )
