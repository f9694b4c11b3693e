"""Embedded DuckDB warehouse (the default target)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from music_platform.warehouse.base import (
    READ_BATCH_ROWS,
    Warehouse,
    WarehouseError,
    batches_with_schema,
    check_identifier,
    lower_case_columns,
)

# dbt and a Python step may briefly contend for the single-writer lock on the file.
_LOCK_RETRY_SECONDS = 60.0

# Row-group size of what our writes store: half DuckDB's default (122,880). An insert writes
# and compresses whole row groups in parallel, one per thread; at the default a day's batch
# (~100-200k rows) fills one or two, so the insert ran on one core. Fed Arrow record batches
# of exactly this size, a 200k-row batch runs on both cores (benchmarks/load_throughput.py).
ROW_GROUP_ROWS = 61_440
_ALIAS = "warehouse"


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Give all-null object columns a text type: DuckDB would otherwise create them as NULL-typed
    columns that later non-null values cannot be inserted into."""
    empty_objects = [c for c in df.columns if df[c].dtype == object and df[c].isna().all()]
    return df.astype({c: "string" for c in empty_objects}) if empty_objects else df


def scan_source(df: pd.DataFrame) -> pd.DataFrame | pa.Table:
    """What DuckDB reads an incoming frame from.

    Arrow-backed frames (the raw loaders build them) become an Arrow table of row-group-sized
    record batches, without copying the buffers, so the insert fills row groups on every core.
    Other frames are scanned by DuckDB's pandas reader, which copes with mixed Python objects
    that Arrow refuses.
    """
    df = _typed(df)
    arrow_columns = [name for name, dtype in df.dtypes.items() if isinstance(dtype, pd.ArrowDtype)]
    if not arrow_columns:
        return df
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # An object column of mixed values beside Arrow columns: DuckDB would try the same
        # conversion for the whole frame, so give it plain Python values to read instead.
        return df.astype({name: object for name in arrow_columns})
    return pa.Table.from_batches(table.to_batches(max_chunksize=ROW_GROUP_ROWS), schema=table.schema)


class DuckDBWarehouse(Warehouse):
    target = "duckdb"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._sessions = threading.local()  # the connection a thread's session() holds open

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one connection to the file open while this thread runs many operations: each then
        takes a cursor on it instead of opening the file (a new DuckDB instance, the catalogue
        read) and closing it (a checkpoint) -- 40 ms or more per operation on a loaded machine.
        While it is open, no other process can open the file: hold it only between dbt runs."""
        if getattr(self._sessions, "conn", None) is not None:  # nested: the outer one holds it
            yield
            return
        with self.connect() as conn:
            self._sessions.conn = conn
            try:
                yield
            finally:
                self._sessions.conn = None

    def check_reachable(self) -> None:
        """The embedded file is created by the first write; only its folder must be usable."""
        folder = Path(self.path).parent
        if folder.exists() and not folder.is_dir():
            raise WarehouseError(f"cannot create the DuckDB warehouse {self.path}: {folder} is not a folder")

    def describe(self) -> str:
        return f"duckdb:{self.path}"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file for one operation, retrying (up to a minute) while another process holds
        its lock or another write of this process has it attached."""
        held = getattr(self._sessions, "conn", None)
        if held is not None:
            yield from self._cursor(held, read_only)
            return
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise WarehouseError(f"DuckDB warehouse {self.path} does not exist yet: run the pipeline first")
        deadline = time.monotonic() + _LOCK_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                conn = self._open(read_only)
                break
            except (duckdb.IOException, duckdb.ResourceInUseException) as exc:
                # IOException: another process holds the lock; ResourceInUse: another write
                # connection of this process has the file attached. Both pass; wait and retry.
                busy = isinstance(exc, duckdb.ResourceInUseException) or "lock" in str(exc).lower()
                if not busy or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open {self.path}: {exc}") from exc
                time.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 2, 1.0)
        try:
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _cursor(held: duckdb.DuckDBPyConnection, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection on the session's instance, resolving names as the held one does; read-only
        requests get a read-only transaction on it."""
        conn = held.cursor()
        try:
            database = held.execute("select current_database()").fetchone()[0]
            conn.execute(f'use "{database}"')
            if read_only:
                conn.execute("begin transaction read only")
            try:
                yield conn
            finally:
                if read_only:
                    conn.execute("rollback")
        finally:
            conn.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if read_only:
            return duckdb.connect(str(self.path), read_only=True)
        # Writes attach the file with our row-group size (a per-attachment setting; readers and
        # dbt open the same file as usual). USE makes unqualified schema.table names resolve to it.
        conn = duckdb.connect()
        try:
            literal = str(self.path).replace("'", "''")
            conn.execute(f"attach '{literal}' as {_ALIAS} (row_group_size {ROW_GROUP_ROWS})")
            conn.execute(f"use {_ALIAS}")
        except duckdb.ResourceInUseException:
            # This process already has the file open (DuckDB shares one instance per file and
            # process): join that instance rather than attaching the file a second time.
            conn.close()
            return duckdb.connect(str(self.path))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _read_only(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only view of the file: a read-only connection (several processes may hold one
        at once), or -- when this process already has the file open for writing, and DuckDB
        refuses to mix modes within one process -- a read-only transaction on that instance."""
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(self.connect(read_only=True))
            except duckdb.ConnectionException:
                conn = stack.enter_context(self.connect())
                conn.execute("begin transaction read only")
                stack.callback(conn.execute, "rollback")  # runs before the connection closes
            yield conn

    def read_batches(
        self, sql: str, params: Sequence[object] = (), batch_rows: int = READ_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        with self._read_only() as conn:
            try:
                # The relation API streams: DuckDB produces the next batch as this one is consumed.
                reader = conn.sql(sql, params=list(params)).to_arrow_reader(batch_rows)
                yield from batches_with_schema(reader, reader.schema)
            except duckdb.Error as exc:
                raise WarehouseError(f"query failed on {self.describe()}: {exc}") from exc

    def execute(self, sql: str) -> None:
        with self.connect() as conn:
            conn.execute(sql)

    def query_df(self, sql: str) -> pd.DataFrame:
        with self.connect() as conn:
            frame = conn.execute(sql).df()
        frame.columns = lower_case_columns(frame.columns)
        return frame

    def table_exists(self, schema: str, table: str) -> bool:
        if not self.path.exists():
            return False
        with self._read_only() as conn:
            found = conn.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, table],
            ).fetchone()
        return bool(found and found[0])

    @staticmethod
    def _ensure_table(conn: duckdb.DuckDBPyConnection, qualified: str, schema: str, df: pd.DataFrame) -> None:
        conn.execute(f"create schema if not exists {schema}")
        conn.register("_incoming", scan_source(df))
        conn.execute(f"create table if not exists {qualified} as select * from _incoming limit 0")

    def replace_table(self, schema: str, table: str, df: pd.DataFrame) -> int:
        qualified = self.qualified(schema, table)
        with self.connect() as conn:
            conn.execute(f"create schema if not exists {check_identifier(schema)}")
            conn.register("_incoming", scan_source(df))
            # CREATE OR REPLACE is one atomic statement: readers see old or new table.
            conn.execute(f"create or replace table {qualified} as select * from _incoming")
            conn.unregister("_incoming")
        return len(df)

    def replace_partition(
        self,
        schema: str,
        table: str,
        df: pd.DataFrame,
        partition_column: str,
        partition_values: Sequence[object],
    ) -> int:
        qualified = self.qualified(schema, table)
        check_identifier(partition_column)
        with self.connect() as conn:
            self._ensure_table(conn, qualified, check_identifier(schema), df)
            conn.execute("begin transaction")
            try:
                if partition_values:
                    placeholders = ", ".join("?" for _ in partition_values)
                    conn.execute(
                        f"delete from {qualified} where {partition_column} in ({placeholders})",
                        list(partition_values),
                    )
                conn.execute(f"insert into {qualified} by name select * from _incoming")
                conn.execute("commit")
            except Exception:
                conn.execute("rollback")
                raise
            finally:
                conn.unregister("_incoming")
        return len(df)

    def append(self, schema: str, table: str, df: pd.DataFrame) -> int:
        qualified = self.qualified(schema, table)
        with self.connect() as conn:
            self._ensure_table(conn, qualified, check_identifier(schema), df)
            conn.execute(f"insert into {qualified} by name select * from _incoming")
            conn.unregister("_incoming")
        return len(df)
