"""The warehouse interface shared by DuckDB, PostgreSQL and Snowflake.

Rules every implementation keeps:
- no connection is held between calls (DuckDB allows one writing process per file, and
  dbt opens the same file in its own process); ``read_batches`` holds one while its result is
  being consumed, and releases it when the iterator is exhausted or closed;
- ``read_batches`` is the streamed, read-only read: values are bound, never formatted into SQL
  (``?`` marks each parameter on every target), and the target itself refuses writes;
- ``replace_partition`` and ``replace_table`` are atomic: a reader sees the old rows or the
  new rows, never half of them, and re-running a load never duplicates rows;
- identifiers are schema/table names we choose in code, never user input.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import pyarrow as pa

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Rows per streamed batch: big enough that per-batch overhead vanishes, small enough that
# a 10M-row read never holds more than a few batches' worth of Arrow buffers.
READ_BATCH_ROWS = 1_000_000


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message says which table and why."""


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise WarehouseError(f"invalid SQL identifier {name!r}")
    return name


def lower_case_columns(names: Iterable[object]) -> list[str]:
    """Result column names as callers use them on every target: lower case.

    Unquoted names come back folded (PostgreSQL: lower, Snowflake: upper) or as written
    (DuckDB: ``as N`` stays ``N``); our identifiers are lower case, so lower-casing every
    name gives one spelling everywhere and callers never need to care which target answered.
    """
    return [str(name).lower() for name in names]


def lower_case_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with lower-case column names (the buffers are shared, not copied)."""
    names = lower_case_columns(batch.schema.names)
    return batch if names == batch.schema.names else pa.RecordBatch.from_arrays(batch.columns, names=names)


def batches_with_schema(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Every batch with lower-case names; one empty batch of ``schema`` when there are none,
    so a caller always learns the result's columns."""
    emitted = False
    for batch in batches:
        emitted = True
        yield lower_case_batch(batch)
    if not emitted:
        yield lower_case_batch(pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema))


class Warehouse(ABC):
    """Minimal warehouse API used by the Python assets and the service."""

    target: str = "abstract"

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run one or more statements (no result)."""

    @abstractmethod
    def query_df(self, sql: str) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame with lower-case column names."""

    @abstractmethod
    def read_batches(
        self, sql: str, params: Sequence[object] = (), batch_rows: int = READ_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Stream the result of one read-only query as Arrow record batches.

        - ``?`` marks each parameter; ``params`` gives their values in order, bound by the
          driver (DuckDB and Snowflake natively, PostgreSQL as ``%s``).
        - Read-only on the target itself: a DuckDB read-only connection, a PostgreSQL
          ``READ ONLY`` transaction, a Snowflake transaction that is rolled back.
        - Big results never become Python objects (DuckDB's Arrow reader, a PostgreSQL
          server-side cursor fetching ``batch_rows`` at a time, Snowflake's Arrow result
          batches), so memory is bounded by a batch.
        - Column names are lower case; at least one batch is yielded (an empty one when there
          are no rows), so the schema is always known.
        """

    def read_arrow(self, sql: str, params: Sequence[object] = ()) -> pa.Table:
        """The whole result of a read-only query (``read_batches``) as one Arrow table."""
        return pa.Table.from_batches(list(self.read_batches(sql, params)))

    @abstractmethod
    def table_exists(self, schema: str, table: str) -> bool: ...

    @contextmanager
    def session(self) -> Iterator[None]:
        """Many operations in a row from this thread: an implementation may keep one connection open
        for them instead of opening one per operation (DuckDB does). Nothing changes here."""
        yield

    def check_reachable(self) -> None:
        """Raise WarehouseError now when the warehouse cannot be reached or refuses the credentials
        (commands call this before starting work, so the operator gets one clear line)."""
        self.query_df("select 1 as reachable")

    @abstractmethod
    def replace_table(self, schema: str, table: str, df: pd.DataFrame) -> int:
        """Atomically replace the whole table with ``df``; returns rows written."""

    @abstractmethod
    def replace_partition(
        self,
        schema: str,
        table: str,
        df: pd.DataFrame,
        partition_column: str,
        partition_values: Sequence[object],
    ) -> int:
        """Atomically delete the rows of ``partition_values`` and insert ``df``.

        Creates the table from ``df``'s columns if it does not exist. Returns rows written.
        """

    @abstractmethod
    def append(self, schema: str, table: str, df: pd.DataFrame) -> int:
        """Insert ``df`` (creating the table if needed); returns rows written."""

    # -- helpers built on the primitives ------------------------------------------------
    def qualified(self, schema: str, table: str) -> str:
        return f"{check_identifier(schema)}.{check_identifier(table)}"

    def row_count(self, schema: str, table: str) -> int:
        if not self.table_exists(schema, table):
            return 0
        return int(self.query_df(f"select count(*) as n from {self.qualified(schema, table)}")["n"].iloc[0])

    def read_table(self, schema: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        cols = ", ".join(check_identifier(c) for c in columns) if columns else "*"
        return self.query_df(f"select {cols} from {self.qualified(schema, table)}")

    def describe(self) -> str:
        """Where this warehouse lives, with no secret in it."""
        return self.target
