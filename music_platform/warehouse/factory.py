"""The one place that maps MUSIC_PLATFORM_TARGET to a warehouse implementation."""

from __future__ import annotations

from music_platform.config import ConfigError, Settings
from music_platform.warehouse.base import Warehouse


def connect_warehouse(settings: Settings) -> Warehouse:
    if settings.target == "duckdb":
        from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(settings.resolved_duckdb_path)
    if settings.target == "postgres":
        if not settings.postgres_url:
            raise ConfigError("MUSIC_PLATFORM_TARGET=postgres needs MUSIC_PLATFORM_POSTGRES_URL")
        from music_platform.warehouse.postgres_warehouse import PostgresWarehouse

        return PostgresWarehouse(settings.postgres_url)
    if settings.target == "snowflake":
        from music_platform.warehouse.snowflake_warehouse import SnowflakeWarehouse

        return SnowflakeWarehouse.from_settings(settings)
    raise ConfigError(f"unknown target {settings.target!r}")
