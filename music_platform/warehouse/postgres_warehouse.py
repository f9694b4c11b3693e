"""PostgreSQL warehouse (the staging target): psycopg 3, bulk loads through ``COPY``.

Loads stream the DataFrame in row batches: each batch is converted to Arrow and written as
CSV (pyarrow's C++ writer) straight into one ``COPY ... FROM STDIN``, so memory is bounded
by a batch and no row goes through a Python-level insert.

Atomicity comes from PostgreSQL's transactional DDL and MVCC: ``replace_partition`` deletes
and copies inside one transaction, ``replace_table`` truncates (or re-creates, when the
columns changed) and copies inside one transaction. A failure anywhere rolls back to the
previous rows.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.copy import QueuedLibpqWriter
from psycopg.postgres import types as pg_types

from music_platform.config import redact_url
from music_platform.warehouse import frames
from music_platform.warehouse.base import (
    READ_BATCH_ROWS,
    Warehouse,
    WarehouseError,
    batches_with_schema,
    check_identifier,
    lower_case_columns,
)

# kind -> (type in DDL, type as information_schema.columns.data_type reports it)
_PG_TYPES: dict[str, tuple[str, str]] = {
    frames.TEXT: ("text", "text"),
    frames.BIGINT: ("bigint", "bigint"),
    frames.INTEGER: ("integer", "integer"),
    frames.DOUBLE: ("double precision", "double precision"),
    frames.NUMERIC: ("numeric", "numeric"),
    frames.BOOLEAN: ("boolean", "boolean"),
    frames.TIMESTAMP: ("timestamp", "timestamp without time zone"),
    frames.DATE: ("date", "date"),
    frames.BINARY: ("bytea", "bytea"),
    frames.JSON: ("jsonb", "jsonb"),
}

_INT_OIDS = {pg_types.get(n).oid for n in ("int2", "int4", "int8", "oid")}
_FLOAT_OIDS = {pg_types.get(n).oid for n in ("float4", "float8", "numeric")}
_BOOL_OID = pg_types.get("bool").oid
_TIMESTAMP_OID = pg_types.get("timestamp").oid
_TIMESTAMPTZ_OID = pg_types.get("timestamptz").oid
_DATE_OID = pg_types.get("date").oid
_NUMERIC_OID = pg_types.get("numeric").oid
_BYTEA_OID = pg_types.get("bytea").oid
_TEXT_OIDS = {pg_types.get(n).oid for n in ("text", "varchar", "bpchar", "name")}

# Arrow type of each result column, by type OID (others: inferred from the values).
_ARROW_TYPES: dict[int, pa.DataType] = {
    **{oid: pa.int64() for oid in _INT_OIDS},
    **{oid: pa.float64() for oid in _FLOAT_OIDS},
    _BOOL_OID: pa.bool_(),
    _TIMESTAMP_OID: pa.timestamp("us"),
    _TIMESTAMPTZ_OID: pa.timestamp("us", tz="UTC"),
    _DATE_OID: pa.date32(),
    _BYTEA_OID: pa.binary(),
    **{oid: pa.string() for oid in _TEXT_OIDS},
}

_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)
# Rows converted per COPY write: small enough that the server parses one batch while the
# next is converted (measured best at 25k on 2 cores), and memory stays a few MB per batch.
COPY_BATCH_ROWS = 25_000


class PostgresWarehouse(Warehouse):
    target = "postgres"

    def __init__(self, url: str, batch_rows: int = COPY_BATCH_ROWS):
        if not url:
            raise WarehouseError("PostgresWarehouse needs a URL such as postgresql://user@host:5432/db")
        self.url = url
        self.batch_rows = batch_rows

    def describe(self) -> str:
        return f"postgres:{redact_url(self.url)}"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """One connection per operation (autocommit; writes use explicit transactions), closed after.

        The database named in the URL is created on first use when it does not exist yet.
        """
        try:
            conn = _open(self.url)
        except psycopg.OperationalError as exc:
            if not create_database_if_missing(self.url):
                raise WarehouseError(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}") from exc
            try:
                conn = _open(self.url)
            except psycopg.Error as retry:
                raise WarehouseError(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {retry}") from retry
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}") from exc
        try:
            # Timestamps are stored as UTC wall time; timestamptz results come back in UTC.
            conn.execute("set time zone 'UTC'")
            yield conn
        finally:
            conn.close()

    # -- reads ------------------------------------------------------------------------------
    def execute(self, statement: str) -> None:
        with self.connect() as conn:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except psycopg.Error as exc:
                raise WarehouseError(f"statement failed on {self.describe()}: {exc}") from exc

    def query_df(self, query: str) -> pd.DataFrame:
        with self.connect() as conn:
            try:
                cur = conn.execute(query)
                if cur.description is None:
                    return pd.DataFrame()
                columns = [(d.name, d.type_code) for d in cur.description]
                rows = cur.fetchall()
            except psycopg.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc}") from exc
        names = lower_case_columns(name for name, _ in columns)
        frame = pd.DataFrame.from_records(rows, columns=names, coerce_float=False)
        for position, (_, oid) in enumerate(columns):
            frame.isetitem(position, _typed_column(frame.iloc[:, position], oid))
        return frame

    def read_batches(
        self, sql_text: str, params: Sequence[object] = (), batch_rows: int = READ_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        query = pyformat_placeholders(sql_text, len(params))
        with self.connect() as conn:
            try:
                with conn.transaction():
                    # The server refuses any write in this transaction, whatever the statement.
                    conn.execute("set transaction read only")
                    # A server-side cursor: the server keeps the result, rows come batch_rows at a time.
                    with conn.cursor(name=f"mp_read_{uuid.uuid4().hex[:12]}") as cur:
                        cur.execute(query, list(params))
                        columns = [(d.name, d.type_code) for d in cur.description or ()]
                        schema = pa.schema([(name, _ARROW_TYPES.get(oid, pa.string())) for name, oid in columns])
                        yield from batches_with_schema(_arrow_batches(cur, columns, batch_rows), schema)
            except psycopg.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc}") from exc

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as conn:
            return self._columns(conn, schema, table) is not None

    @staticmethod
    def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str] | None:
        """Column name -> data_type of an existing table or view, None when it does not exist."""
        rows = conn.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            [check_identifier(schema).lower(), check_identifier(table).lower()],
        ).fetchall()
        return {name: data_type for name, data_type in rows} or None

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
        target = _table_sql(schema, table)
        column = sql.Identifier(check_identifier(partition_column).lower())
        with self.connect() as conn:
            self._ensure_schema(conn, schema)
            try:
                with conn.transaction():
                    existing = self._ensure_table(conn, schema, table, specs)
                    if partition_column.lower() not in existing:
                        raise WarehouseError(f"{schema}.{table} has no partition column {partition_column!r}")
                    if partition_values:
                        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(partition_values))
                        conn.execute(
                            sql.SQL("delete from {} where {} in ({})").format(target, column, placeholders),
                            list(partition_values),
                        )
                    self._copy(conn, target, df, specs)
            except psycopg.Error as exc:
                raise WarehouseError(f"replace_partition of {schema}.{table} failed, nothing changed: {exc}") from exc
        return len(df)

    def append(self, schema: str, table: str, df: pd.DataFrame) -> int:
        specs = frames.column_specs(df)
        with self.connect() as conn:
            self._ensure_schema(conn, schema)
            try:
                with conn.transaction():
                    self._ensure_table(conn, schema, table, specs)
                    self._copy(conn, _table_sql(schema, table), df, specs)
            except psycopg.Error as exc:
                raise WarehouseError(f"append to {schema}.{table} failed, nothing changed: {exc}") from exc
        return len(df)

    def replace_table(self, schema: str, table: str, df: pd.DataFrame) -> int:
        specs = frames.column_specs(df)
        target = _table_sql(schema, table)
        with self.connect() as conn:
            self._ensure_schema(conn, schema)
            try:
                with conn.transaction():
                    existing = self._columns(conn, schema, table)
                    if existing is not None and _same_columns(existing, specs, df):
                        # TRUNCATE keeps dependent views (dbt staging) valid; readers wait for the commit.
                        conn.execute(sql.SQL("truncate table {}").format(target))
                    else:
                        if existing is not None:
                            conn.execute(sql.SQL("drop table {}").format(target))
                        conn.execute(_create_table_sql(schema, table, specs, if_not_exists=False))
                    self._copy(conn, target, df, specs)
            except psycopg.errors.DependentObjectsStillExist as exc:
                raise WarehouseError(
                    f"replace_table cannot change the columns of {schema}.{table} while views depend on it "
                    f"(drop or rebuild them, e.g. with dbt): {exc}"
                ) from exc
            except psycopg.Error as exc:
                raise WarehouseError(f"replace_table of {schema}.{table} failed, nothing changed: {exc}") from exc
        return len(df)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _ensure_schema(conn: psycopg.Connection, schema: str) -> None:
        try:
            conn.execute(
                sql.SQL("create schema if not exists {}").format(sql.Identifier(check_identifier(schema).lower()))
            )
        except psycopg.errors.UniqueViolation:
            pass  # created concurrently by another loader: fine
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot create schema {schema}: {exc}") from exc

    def _ensure_table(
        self, conn: psycopg.Connection, schema: str, table: str, specs: list[frames.ColumnSpec]
    ) -> dict[str, str]:
        existing = self._columns(conn, schema, table)
        if existing is None:
            conn.execute(_create_table_sql(schema, table, specs, if_not_exists=True))
            existing = self._columns(conn, schema, table) or {}
        unknown = [s.name for s in specs if s.name.lower() not in existing]
        if unknown:
            raise WarehouseError(
                f"{schema}.{table} has no column(s) {', '.join(unknown)}: "
                f"its columns are {', '.join(existing)} (use replace_table to change them)"
            )
        return existing

    def _copy(
        self, conn: psycopg.Connection, target: sql.Composable, df: pd.DataFrame, specs: list[frames.ColumnSpec]
    ) -> None:
        if df.empty:
            return
        columns = sql.SQL(", ").join(sql.Identifier(s.name.lower()) for s in specs)
        statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(target, columns)
        # The queued writer sends to the server from a thread, so PostgreSQL parses one batch
        # while this process converts the next (the two cores work at once).
        with conn.cursor() as cur, cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
            for batch in frames.iter_batches(df, self.batch_rows):
                arrow_batch = frames.to_arrow(_postgres_values(frames.prepare_batch(batch, specs), specs))
                buffer = io.BytesIO()
                pa_csv.write_csv(arrow_batch, buffer, _CSV_OPTIONS)
                copy.write(buffer.getbuffer())


def pyformat_placeholders(sql_text: str, expected: int) -> str:
    """``sql_text`` with each ``?`` placeholder as psycopg's ``%s`` (and a literal ``%`` as ``%%``).

    ``?`` inside quoted strings, quoted identifiers and comments is left alone. (PostgreSQL's
    jsonb ``?`` operators cannot be written here: use ``jsonb_exists`` instead.)
    """
    out: list[str] = []
    found = 0
    i, n = 0, len(sql_text)
    while i < n:
        char = sql_text[i]
        if char in "'\"":  # a quoted string or identifier runs to its closing quote (doubled quotes stay inside)
            end = i + 1
            while end < n:
                if sql_text[end] == char:
                    if end + 1 < n and sql_text[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql_text[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql_text.startswith("--", i):
            end = sql_text.find("\n", i)
            end = n if end < 0 else end
            out.append(sql_text[i:end].replace("%", "%%"))
            i = end
        elif sql_text.startswith("/*", i):
            end = sql_text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql_text[i:end].replace("%", "%%"))
            i = end
        elif char == "?":
            out.append("%s")
            found += 1
            i += 1
        else:
            out.append("%%" if char == "%" else char)
            i += 1
    if found != expected:
        raise WarehouseError(f"the query has {found} ? placeholder(s) but {expected} parameter(s) were given")
    return "".join(out)


def _arrow_value(value: object) -> object:
    # numeric arrives as Decimal; the Arrow column is float64, as query_df's is.
    return float(value) if isinstance(value, Decimal) else value


def _text(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _arrow_batches(
    cur: psycopg.ServerCursor, columns: list[tuple[str, int]], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    names = [name for name, _ in columns]
    while rows := cur.fetchmany(batch_rows):
        arrays = []
        for position, (_, oid) in enumerate(columns):
            values = [row[position] for row in rows]
            arrow_type = _ARROW_TYPES.get(oid)
            if oid == _NUMERIC_OID:
                values = [_arrow_value(v) for v in values]
            if arrow_type is None:  # json, uuid, arrays ...: their text form
                values = [_text(v) for v in values]
                arrow_type = pa.string()
            arrays.append(pa.array(values, type=arrow_type))
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def _open(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, application_name="music_platform", connect_timeout=15)


def create_database_if_missing(url: str, maintenance_db: str = "postgres") -> bool:
    """Create the database named in ``url`` when the server has no such database.

    Connects to the maintenance database with the same credentials (the user needs CREATEDB);
    a database created here gets a ``public`` schema, which dbt-postgres expects. Returns True
    when the database exists now (created here or, at the same moment, by another process), so
    one retry of the connection is worth it; False when the maintenance database cannot be
    reached either, so the caller reports its own connection error.
    """
    database = conninfo_to_dict(url).get("dbname")
    if not database or database == maintenance_db:
        return False
    created = False
    try:
        with psycopg.connect(make_conninfo(url, dbname=maintenance_db), autocommit=True, connect_timeout=15) as admin:
            if not admin.execute("select 1 from pg_database where datname = %s", [database]).fetchone():
                try:
                    # UTF-8 whatever the cluster's default: names come in every script, and the
                    # name key counts characters, not bytes.
                    admin.execute(
                        sql.SQL("create database {} encoding 'UTF8' template template0").format(
                            sql.Identifier(database)
                        )
                    )
                    created = True
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    pass  # another process created it at the same moment
        if created:
            with _open(url) as conn:
                conn.execute("create schema if not exists public")
    except psycopg.Error:
        return False
    return True


def _table_sql(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(
        sql.Identifier(check_identifier(schema).lower()), sql.Identifier(check_identifier(table).lower())
    )


def _create_table_sql(schema: str, table: str, specs: list[frames.ColumnSpec], *, if_not_exists: bool) -> sql.Composed:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(s.name.lower()), sql.SQL(_PG_TYPES[s.kind][0])) for s in specs
    )
    verb = sql.SQL("create table if not exists" if if_not_exists else "create table")
    return sql.SQL("{} {} ({})").format(verb, _table_sql(schema, table), columns)


def _same_columns(existing: dict[str, str], specs: list[frames.ColumnSpec], df: pd.DataFrame) -> bool:
    """Same column names and types; an all-null column fits whatever type the table has."""
    if set(existing) != {s.name.lower() for s in specs}:
        return False
    for spec in specs:
        if existing[spec.name.lower()] != _PG_TYPES[spec.kind][1] and df[spec.name].notna().any():
            return False
    return True


def _postgres_values(batch: pd.DataFrame, specs: list[frames.ColumnSpec]) -> pd.DataFrame:
    """CSV spellings PostgreSQL needs beyond the shared preparation: bytea as hex."""
    binary = [s.name for s in specs if s.kind == frames.BINARY]
    if not binary:
        return batch
    batch = batch.copy(deep=False)
    for name in binary:
        batch[name] = batch[name].map(lambda v: None if v is None else "\\x" + bytes(v).hex())
    return batch


def _typed_column(column: pd.Series, oid: int) -> pd.Series:
    """Result dtypes like DuckDB's ``.df()``: Int64 for nullable ints, datetime64 for dates."""
    has_nulls = bool(column.isna().any())
    if oid in _INT_OIDS:
        return column.astype("Int64") if has_nulls else column.astype("int64")
    if oid in _FLOAT_OIDS:
        return column.astype("float64")
    if oid == _BOOL_OID:
        return column.astype("boolean") if has_nulls else column.astype(bool)
    if oid in (_TIMESTAMP_OID, _DATE_OID):
        return pd.to_datetime(column)
    if oid == _TIMESTAMPTZ_OID:
        return pd.to_datetime(column, utc=True)
    return column
