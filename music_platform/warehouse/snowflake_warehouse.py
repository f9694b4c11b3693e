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

Connections: ``connect_args`` are the connector's documented ``connect()`` arguments. Where
Dagster runs, ``WarehouseResource`` hands in dagster-snowflake's ``SnowflakeResource.get_connection``
as the ``connection_factory`` (same arguments); the CLI and the service, which do not import
Dagster, call ``snowflake.connector.connect`` with them. Both bind parameters with ``qmark`` (``?``,
bound by the server), as DuckDB does.

Result types come from the Arrow result (``fetch_arrow_batches``/``fetch_arrow_all``, public
cursor methods), never from the connector's internal type-code tables.

Identifiers: Snowflake folds unquoted identifiers to upper case, so ``raw.lastfm_scrobbles``
written in lower case means ``RAW.LASTFM_SCROBBLES``. Every identifier we emit is upper-cased
(and column names double-quoted, which keeps names such as ``rank`` safe); results come back
with lower-case column names, as on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector

from music_platform.config import ConfigError, Settings
from music_platform.warehouse import frames
from music_platform.warehouse.base import (
    READ_BATCH_ROWS,
    Warehouse,
    WarehouseError,
    batches_with_schema,
    check_identifier,
    lower_case_columns,
)

ConnectionFactory = Callable[[], AbstractContextManager[snowflake.connector.SnowflakeConnection]]

# Session options every connection gets, whoever opens it: explicit transactions where a write
# needs one, server-side binding of ``?``, UTC timestamps, a tag to find our queries by.
SESSION_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "paramstyle": "qmark",
    "login_timeout": 60,
    "client_session_keep_alive": False,
}
SESSION_PARAMETERS: dict[str, str] = {"TIMEZONE": "UTC", "QUERY_TAG": "music_platform"}

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

    def __init__(
        self,
        connect_args: dict[str, Any],
        batch_rows: int = frames.DEFAULT_BATCH_ROWS,
        connection_factory: ConnectionFactory | None = None,
    ):
        """``connect_args``: account, user, password, database and the optional settings (what
        :func:`connect_args_from_settings` gives). ``connection_factory`` opens a connection
        with them (default: ``snowflake.connector.connect``)."""
        self._connect_args = dict(connect_args)
        self.batch_rows = batch_rows
        self._connection_factory = connection_factory or self._connector_connection

    @classmethod
    def from_settings(cls, settings: Settings, batch_rows: int = frames.DEFAULT_BATCH_ROWS) -> SnowflakeWarehouse:
        return cls(connect_args_from_settings(settings), batch_rows=batch_rows)

    def describe(self) -> str:
        args = self._connect_args
        where = f"{args.get('host')}:{args.get('port')}" if args.get("host") else args.get("account")
        return f"snowflake:{args.get('user')}@{where}/{args.get('database')}"

    @contextmanager
    def _connector_connection(self) -> Iterator[snowflake.connector.SnowflakeConnection]:
        conn = snowflake.connector.connect(
            **{**SESSION_OPTIONS, "session_parameters": dict(SESSION_PARAMETERS), **self._connect_args}
        )
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def connect(self) -> Iterator[snowflake.connector.SnowflakeConnection]:
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(self._connection_factory())
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"cannot connect to {self.describe()}: {exc.msg or exc}") from exc
            # Closed here whatever happens in the block (a factory may close on success only).
            stack.callback(conn.close)
            yield conn

    # -- reads ------------------------------------------------------------------------------
    def read_batches(
        self, sql: str, params: Sequence[object] = (), batch_rows: int = READ_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        with self.connect() as conn, conn.cursor() as cur:
            try:
                # Snowflake has no read-only session: the query runs in a transaction that is
                # always rolled back, so a DML statement changes nothing.
                cur.execute("begin transaction")
                try:
                    cur.execute(sql, tuple(params))
                    batches = (batch for table in cur.fetch_arrow_batches() for batch in table.to_batches(batch_rows))
                    first = next(batches, None)
                    if first is None:  # no rows: an empty table still names the columns
                        empty = cur.fetch_arrow_all(force_return_table=True)
                        yield from batches_with_schema((), empty.schema)
                    else:
                        yield from batches_with_schema(_chain(first, batches), first.schema)
                finally:
                    cur.execute("rollback")
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc.msg or exc}") from exc

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
                names = lower_case_columns(d.name for d in cur.description)
                try:
                    table = cur.fetch_arrow_all(force_return_table=True)
                except snowflake.connector.NotSupportedError:
                    # SHOW/DESCRIBE answer in JSON, not Arrow.
                    return pd.DataFrame.from_records(cur.fetchall(), columns=names)
            except snowflake.connector.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc.msg or exc}") from exc
        # Unquoted names come back folded to upper case: callers get lower case, as on every target.
        return frames.arrow_to_frame(table.rename_columns(names))

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as conn, conn.cursor() as cur:
            return self._columns(cur, schema, table) is not None

    @staticmethod
    def _columns(cur: snowflake.connector.cursor.SnowflakeCursor, schema: str, table: str) -> list[str] | None:
        rows = cur.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
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
                            placeholders = ", ".join(["?"] * len(partition_values))
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


def connect_args_from_settings(settings: Settings) -> dict[str, Any]:
    """The connector's ``connect()`` arguments for the Snowflake settings (no session options)."""
    return snowflake_connect_args(
        account=settings.snowflake_account,
        user=settings.snowflake_user,
        password=settings.snowflake_password,
        database=settings.snowflake_database,
        schema=settings.snowflake_schema,
        warehouse=settings.snowflake_warehouse,
        role=settings.snowflake_role,
        host=settings.snowflake_host,
        port=settings.snowflake_port,
        protocol=settings.snowflake_protocol,
    )


def snowflake_connect_args(
    *,
    account: str | None,
    user: str | None,
    password: str | None,
    database: str | None,
    schema: str | None = None,
    warehouse: str | None = None,
    role: str | None = None,
    host: str | None = None,
    port: int | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """The connector's ``connect()`` arguments; a ConfigError names every missing variable."""
    required = {
        "SNOWFLAKE_ACCOUNT": account,
        "SNOWFLAKE_USER": user,
        "SNOWFLAKE_PASSWORD": password,
        "SNOWFLAKE_DATABASE": database,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise ConfigError(f"MUSIC_PLATFORM_TARGET=snowflake needs {', '.join(missing)}")
    args: dict[str, Any] = {"account": account, "user": user, "password": password, "database": database}
    optional = {
        "schema": schema,
        "warehouse": warehouse,
        "role": role,
        # A local fakesnow server: SNOWFLAKE_HOST=localhost SNOWFLAKE_PORT=... SNOWFLAKE_PROTOCOL=http
        "host": host,
        "port": port,
        "protocol": protocol,
    }
    args.update({key: value for key, value in optional.items() if value})
    return args


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _column_ddl(specs: list[frames.ColumnSpec]) -> str:
    return ", ".join(f"{_column(s.name)} {_SF_TYPES[s.kind]}" for s in specs)
