"""Snowflake warehouse (the cloud target): snowflake-connector-python, bulk loads through a stage.

Loading is what ``snowflake.connector.pandas_tools.write_pandas`` does — Parquet files PUT to a
temporary stage, then one ``COPY INTO`` — written out here for two reasons:

- Snowflake commits any open transaction when a DDL statement runs, and ``write_pandas``
  creates its temporary stage (DDL) itself, so ``delete`` + ``write_pandas`` inside one
  transaction would commit the delete before the load. Here every DDL statement (schema,
  table, stage, incoming table) runs *before* ``BEGIN``, and the transaction holds DML only.
- the ``COPY INTO ... FROM '@stage'`` that connector 4.x emits is not understood by fakesnow,
  the local server the tests run against; ``FROM @stage`` works on both.

Every load first lands in a transient *incoming* table shaped like the target, so a bad value
fails the ``COPY`` before the target is touched; then ``BEGIN; DELETE; INSERT ... SELECT;
COMMIT`` (partitions) or one ``CREATE OR REPLACE TABLE ... AS SELECT`` (whole tables) swaps the
rows in atomically.

Identifiers: Snowflake folds unquoted identifiers to upper case, so ``raw.lastfm_scrobbles``
written in lower case means ``RAW.LASTFM_SCROBBLES``. Every identifier we emit is upper-cased
(and column names double-quoted, which keeps names such as ``rank`` safe); results come back
with lower-case column names, as on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import snowflake.connector
from snowflake.connector.constants import FIELD_NAME_TO_ID

from music_platform.config import ConfigError, Settings
from music_platform.warehouse import frames
from music_platform.warehouse.base import Warehouse, WarehouseError, check_identifier, lower_case_columns

_SF_TYPES: dict[str, str] = {
    frames.TEXT: "VARCHAR",
    frames.BIGINT: "NUMBER(38,0)",
    frames.INTEGER: "NUMBER(38,0)",
    frames.DOUBLE: "FLOAT",
    frames.NUMERIC: "NUMBER(38,12)",
    frames.BOOLEAN: "BOOLEAN",
    frames.TIMESTAMP: "TIMESTAMP_NTZ",
    frames.DATE: "DATE",
    frames.BINARY: "BINARY",
    frames.JSON: "VARCHAR",  # JSON text; PARSE_JSON in dbt where a VARIANT is wanted
}

_FIXED = FIELD_NAME_TO_ID["FIXED"]
_REAL = FIELD_NAME_TO_ID["REAL"]
_BOOLEAN = FIELD_NAME_TO_ID["BOOLEAN"]
_NAIVE_TIME = {FIELD_NAME_TO_ID["DATE"], FIELD_NAME_TO_ID["TIMESTAMP_NTZ"]}
_AWARE_TIME = {FIELD_NAME_TO_ID["TIMESTAMP_LTZ"], FIELD_NAME_TO_ID["TIMESTAMP_TZ"]}

_COPY_OPTIONS = (
    "file_format = (type = parquet use_logical_type = true) "
    "match_by_column_name = case_insensitive purge = true on_error = abort_statement"
)


def _ident(name: str) -> str:
    """Unquoted identifiers fold to upper case in Snowflake; we emit that folded form."""
    return check_identifier(name).upper()


def _column(name: str) -> str:
    return f'"{_ident(name)}"'


def _qualified(schema: str, table: str) -> str:
    return f"{_ident(schema)}.{_ident(table)}"


class SnowflakeWarehouse(Warehouse):
    target = "snowflake"

    def __init__(self, connect_args: dict[str, Any], batch_rows: int = frames.DEFAULT_BATCH_ROWS):
        self._connect_args = dict(connect_args)
        self.batch_rows = batch_rows

    @classmethod
    def from_settings(cls, settings: Settings, batch_rows: int = frames.DEFAULT_BATCH_ROWS) -> SnowflakeWarehouse:
        required = {
            "SNOWFLAKE_ACCOUNT": settings.snowflake_account,
            "SNOWFLAKE_USER": settings.snowflake_user,
            "SNOWFLAKE_PASSWORD": settings.snowflake_password,
            "SNOWFLAKE_DATABASE": settings.snowflake_database,
        }
        missing = [name for name, value in required.items() if not value]
        if missing:
            raise ConfigError(f"MUSIC_PLATFORM_TARGET=snowflake needs {', '.join(missing)}")
        args: dict[str, Any] = {
            "account": settings.snowflake_account,
            "user": settings.snowflake_user,
            "password": settings.snowflake_password,
            "database": settings.snowflake_database,
        }
        optional = {
            "schema": settings.snowflake_schema,
            "warehouse": settings.snowflake_warehouse,
            "role": settings.snowflake_role,
            # A local fakesnow server: SNOWFLAKE_HOST=localhost SNOWFLAKE_PORT=... SNOWFLAKE_PROTOCOL=http
            "host": settings.snowflake_host,
            "port": settings.snowflake_port,
            "protocol": settings.snowflake_protocol,
        }
        args.update({key: value for key, value in optional.items() if value})
        return cls(args, batch_rows=batch_rows)

    def describe(self) -> str:
        args = self._connect_args
        where = f"{args.get('host')}:{args.get('port')}" if args.get("host") else args.get("account")
        return f"snowflake:{args.get('user')}@{where}/{args.get('database')}"

    @contextmanager
    def connect(self) -> Iterator[snowflake.connector.SnowflakeConnection]:
        try:
            conn = snowflake.connector.connect(
                **{
                    "login_timeout": 60,
                    "client_session_keep_alive": False,
                    "session_parameters": {"TIMEZONE": "UTC", "QUERY_TAG": "music_platform"},
                    **self._connect_args,
                    "autocommit": True,  # writes open explicit transactions where they need one
                }
            )
        except snowflake.connector.Error as exc:
            raise WarehouseError(f"cannot connect to {self.describe()}: {exc.msg or exc}") from exc
        try:
            yield conn
        finally:
            conn.close()

    # -- reads ------------------------------------------------------------------------------
    def execute(self, statement: str) -> None:
        with self.connect() as conn:
            try:
                # execute_string runs each statement of a script in turn.
                conn.execute_string(statement)
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"statement failed on {self.describe()}: {exc.msg or exc}") from exc

    def query_df(self, query: str) -> pd.DataFrame:
        with self.connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(query)
                if not cur.description:
                    return pd.DataFrame()
                description = [(d.name, d.type_code, d.scale) for d in cur.description]
                try:
                    frame = cur.fetch_pandas_all()
                except snowflake.connector.NotSupportedError:
                    # SHOW/DESCRIBE answer in JSON, not Arrow.
                    frame = pd.DataFrame.from_records(cur.fetchall(), columns=[name for name, _, _ in description])
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc.msg or exc}") from exc
        # Unquoted names come back folded to upper case: callers get lower case, as on every target.
        frame.columns = lower_case_columns(name for name, _, _ in description)
        for position, (_, type_code, scale) in enumerate(description):
            frame.isetitem(position, _typed_column(frame.iloc[:, position], type_code, scale))
        return frame

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as conn, conn.cursor() as cur:
            return self._columns(cur, schema, table) is not None

    @staticmethod
    def _columns(cur: snowflake.connector.cursor.SnowflakeCursor, schema: str, table: str) -> list[str] | None:
        rows = cur.execute(
            "select column_name from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            (_ident(schema), _ident(table)),
        ).fetchall()
        return [row[0] for row in rows] or None

    # -- writes -----------------------------------------------------------------------------
    def replace_partition(
        self,
        schema: str,
        table: str,
        df: pd.DataFrame,
        partition_column: str,
        partition_values: Sequence[object],
    ) -> int:
        specs = frames.column_specs(df)
        target = _qualified(schema, table)
        with self.connect() as conn, conn.cursor() as cur:
            try:
                existing = self._ensure_table(cur, schema, table, specs)
                if _ident(partition_column) not in existing:
                    raise WarehouseError(f"{schema}.{table} has no partition column {partition_column!r}")
                with self._incoming(cur, schema, table, df, specs, like=target) as incoming:
                    columns = ", ".join(_column(s.name) for s in specs)
                    cur.execute("begin transaction")
                    try:
                        if partition_values:
                            placeholders = ", ".join(["%s"] * len(partition_values))
                            cur.execute(
                                f"delete from {target} where {_column(partition_column)} in ({placeholders})",
                                tuple(partition_values),
                            )
                        cur.execute(f"insert into {target} ({columns}) select {columns} from {incoming}")
                        cur.execute("commit")
                    except BaseException:
                        cur.execute("rollback")
                        raise
            except snowflake.connector.Error as exc:
                raise WarehouseError(
                    f"replace_partition of {schema}.{table} failed, nothing changed: {exc.msg or exc}"
                ) from exc
        return len(df)

    def append(self, schema: str, table: str, df: pd.DataFrame) -> int:
        specs = frames.column_specs(df)
        target = _qualified(schema, table)
        with self.connect() as conn, conn.cursor() as cur:
            try:
                self._ensure_table(cur, schema, table, specs)
                if not df.empty:
                    # One COPY INTO is one statement: it loads every staged file or none.
                    with self._staged(cur, schema, df, specs) as stage:
                        cur.execute(f"copy into {target} from @{stage} {_COPY_OPTIONS}")
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"append to {schema}.{table} failed, nothing changed: {exc.msg or exc}") from exc
        return len(df)

    def replace_table(self, schema: str, table: str, df: pd.DataFrame) -> int:
        specs = frames.column_specs(df)
        target = _qualified(schema, table)
        with self.connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(f"create schema if not exists {_ident(schema)}")
                with self._incoming(cur, schema, table, df, specs, like=None) as incoming:
                    # CREATE OR REPLACE is one atomic statement: readers see the old or the new table.
                    cur.execute(f"create or replace table {target} as select * from {incoming}")
            except snowflake.connector.Error as exc:
                raise WarehouseError(
                    f"replace_table of {schema}.{table} failed, nothing changed: {exc.msg or exc}"
                ) from exc
        return len(df)

    # -- helpers ----------------------------------------------------------------------------
    def _ensure_table(self, cur, schema: str, table: str, specs: list[frames.ColumnSpec]) -> list[str]:
        cur.execute(f"create schema if not exists {_ident(schema)}")
        existing = self._columns(cur, schema, table)
        if existing is None:
            cur.execute(f"create table if not exists {_qualified(schema, table)} ({_column_ddl(specs)})")
            existing = self._columns(cur, schema, table) or []
        unknown = [s.name for s in specs if _ident(s.name) not in existing]
        if unknown:
            raise WarehouseError(
                f"{schema}.{table} has no column(s) {', '.join(unknown)}: its columns are "
                f"{', '.join(c.lower() for c in existing)} (use replace_table to change them)"
            )
        return existing

    @contextmanager
    def _incoming(
        self, cur, schema: str, table: str, df: pd.DataFrame, specs: list[frames.ColumnSpec], like: str | None
    ) -> Iterator[str]:
        """A transient table holding ``df``, typed like ``like`` (or from ``df``); dropped afterwards."""
        incoming = f"{_ident(schema)}.{_ident(table)}__INCOMING_{uuid.uuid4().hex[:12].upper()}"
        shape = f"like {like}" if like else f"({_column_ddl(specs)})"
        cur.execute(f"create transient table {incoming} {shape}")
        try:
            if not df.empty:
                with self._staged(cur, schema, df, specs) as stage:
                    cur.execute(f"copy into {incoming} from @{stage} {_COPY_OPTIONS}")
            yield incoming
        finally:
            cur.execute(f"drop table if exists {incoming}")

    @contextmanager
    def _staged(self, cur, schema: str, df: pd.DataFrame, specs: list[frames.ColumnSpec]) -> Iterator[str]:
        """``df`` as Parquet files in a temporary stage, written and uploaded one batch at a time."""
        # A temporary stage lives as long as the session, which ends with this operation;
        # COPY ... PURGE = TRUE removes the files once loaded.
        stage = f"{_ident(schema)}.MP_LOAD_{uuid.uuid4().hex[:12].upper()}"
        cur.execute(f"create temporary stage {stage} file_format = (type = parquet)")
        with tempfile.TemporaryDirectory(prefix="mp_snowflake_") as folder:
            for number, batch in enumerate(frames.iter_batches(df, self.batch_rows)):
                path = Path(folder) / f"part_{number:06d}.parquet"
                pq.write_table(
                    frames.to_arrow(frames.prepare_batch(batch, specs)),
                    path,
                    coerce_timestamps="us",  # Snowflake and PostgreSQL keep microseconds
                    allow_truncated_timestamps=True,
                )
                cur.execute(f"put 'file://{path.as_posix()}' @{stage} auto_compress = false overwrite = true")
                path.unlink()
        yield stage


def _column_ddl(specs: list[frames.ColumnSpec]) -> str:
    return ", ".join(f"{_column(s.name)} {_SF_TYPES[s.kind]}" for s in specs)


def _typed_column(column: pd.Series, type_code: int, scale: int | None) -> pd.Series:
    """Result dtypes like DuckDB's ``.df()``: int64/Int64 for NUMBER(p,0), datetime64 for dates."""
    has_nulls = bool(column.isna().any())
    if type_code == _FIXED and not scale:
        return column.astype("Int64") if has_nulls else column.astype("int64")
    if type_code in (_FIXED, _REAL):
        return column.astype("float64")
    if type_code == _BOOLEAN:
        return column.astype("boolean") if has_nulls else column.astype(bool)
    if type_code in _NAIVE_TIME:
        return pd.to_datetime(column)
    if type_code in _AWARE_TIME:
        return pd.to_datetime(column, utc=True)
    return column
