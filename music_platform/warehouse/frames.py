"""How a pandas DataFrame becomes typed SQL columns, shared by the PostgreSQL and Snowflake loaders.

DuckDB reads DataFrames natively; the two server warehouses need a table definition and a
bulk-load file (CSV for PostgreSQL ``COPY``, Parquet for Snowflake ``COPY INTO``). Both start
here: every column gets one *kind* from its dtype (or, for ``object`` columns, from its
values), and ``prepare_batch`` turns a slice of the frame into values those formats write
without surprises (UTC-naive timestamps, nullable integers, JSON text for nested values).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from music_platform.warehouse.base import WarehouseError, check_identifier

# Column kinds, each mapped to a concrete type by the target.
TEXT = "text"
BIGINT = "bigint"
INTEGER = "integer"
DOUBLE = "double"
NUMERIC = "numeric"
BOOLEAN = "boolean"
TIMESTAMP = "timestamp"
DATE = "date"
BINARY = "binary"
JSON = "json"

DEFAULT_BATCH_ROWS = 100_000
_SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class ColumnSpec:
    name: str  # as written in the DataFrame
    kind: str


def _kind_of_arrow_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return BOOLEAN
    if pa.types.is_integer(arrow_type):
        return _integer_kind(np.dtype(arrow_type.to_pandas_dtype()))
    if pa.types.is_floating(arrow_type):
        return DOUBLE
    if pa.types.is_decimal(arrow_type):
        return NUMERIC
    if pa.types.is_timestamp(arrow_type):
        return TIMESTAMP
    if pa.types.is_date(arrow_type):
        return DATE
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return BINARY
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_null(arrow_type):
        return TEXT
    if pa.types.is_list(arrow_type) or pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return JSON
    raise WarehouseError(f"unsupported column type {arrow_type}")


def _integer_kind(dtype: np.dtype) -> str:
    unsigned = dtype.kind == "u"
    if dtype.itemsize == 8:
        return NUMERIC if unsigned else BIGINT  # uint64 does not fit a signed 64-bit column
    if dtype.itemsize == 4 and unsigned:
        return BIGINT
    return INTEGER


def column_kind(series: pd.Series) -> str:
    """The SQL kind of one column, from its dtype or, for ``object`` columns, its values."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column_kind(pd.Series(np.asarray(series.cat.categories), dtype=dtype.categories.dtype))
    if isinstance(dtype, pd.ArrowDtype):
        return _kind_of_arrow_type(dtype.pyarrow_dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return BOOLEAN
    if pd.api.types.is_integer_dtype(dtype):
        return _integer_kind(np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype))
    if pd.api.types.is_float_dtype(dtype):
        return DOUBLE
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return TIMESTAMP
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise WarehouseError(
            f"column {series.name!r} holds durations, which not every warehouse can store: "
            "convert it to a number of seconds first"
        )
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return TEXT
    # Python objects: judge by a sample of the non-null values (a full scan of a million-row
    # column costs more than the load). A later value that does not fit fails the load with
    # the column's name; text columns take any value through str().
    head = series.iloc[:_SAMPLE_ROWS]
    sample = head[head.notna()]
    if sample.empty:
        sample = series.dropna().iloc[:_SAMPLE_ROWS]
    inferred = pd.api.types.infer_dtype(sample, skipna=True)
    kind = {
        "string": TEXT,
        "empty": TEXT,
        "integer": BIGINT,
        "floating": DOUBLE,
        "mixed-integer-float": DOUBLE,
        "integer-na": BIGINT,
        "decimal": NUMERIC,
        "boolean": BOOLEAN,
        "datetime": TIMESTAMP,
        "datetime64": TIMESTAMP,
        "date": DATE,
        "bytes": BINARY,
    }.get(inferred)
    if kind is None:  # mixed values: nested ones become JSON, anything else text
        kind = JSON if any(isinstance(v, dict | list | tuple) for v in sample) else TEXT
    return kind


def column_specs(df: pd.DataFrame) -> list[ColumnSpec]:
    """One spec per column; names must be plain identifiers and unique ignoring case."""
    seen: dict[str, str] = {}
    specs = []
    for name in df.columns:
        if not isinstance(name, str):
            raise WarehouseError(f"column names must be strings, got {name!r}")
        check_identifier(name)
        folded = name.lower()
        if folded in seen:
            raise WarehouseError(f"columns {seen[folded]!r} and {name!r} differ only by case")
        seen[folded] = name
        specs.append(ColumnSpec(name=name, kind=column_kind(df[name])))
    return specs


def _json_text(value: object) -> object:
    """Every non-null value as a JSON document (scalars too, so the column parses as JSON)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return json.dumps(value, default=str, ensure_ascii=False)


def _to_text(value: object) -> object:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def prepare_batch(batch: pd.DataFrame, specs: list[ColumnSpec]) -> pd.DataFrame:
    """Values ready for a bulk-load file: UTC-naive timestamps, nullable ints, text for mixed columns."""
    out: dict[str, object] = {}
    for spec in specs:
        try:
            out[spec.name] = _prepare_column(batch[spec.name], spec.kind)
        except (TypeError, ValueError, OverflowError) as exc:
            raise WarehouseError(f"column {spec.name!r} does not fit its {spec.kind} type: {exc}") from exc
    return pd.DataFrame(out, index=batch.index, copy=False)


def _prepare_column(s: pd.Series, kind: str) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if kind == TIMESTAMP:
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            return s.dt.tz_convert("UTC").dt.tz_localize(None)
        if not pd.api.types.is_datetime64_any_dtype(s.dtype):
            # datetime objects, possibly aware: naive values are taken as UTC already.
            return pd.to_datetime(s, utc=True).dt.tz_localize(None)
        return s
    if s.dtype != object:
        return s
    if kind == TEXT:
        # Plain strings (the common case) go to Arrow as they are; anything else through str().
        return s if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty") else s.map(_to_text)
    if kind == DATE:
        return s.map(lambda v: v.date() if isinstance(v, dt.datetime) else v)
    if kind in (BIGINT, INTEGER):
        return pd.Series(pd.array(s.tolist(), dtype="Int64"), index=s.index)
    if kind == BOOLEAN:
        return pd.Series(pd.array(s.tolist(), dtype="boolean"), index=s.index)
    if kind == DOUBLE:
        return pd.to_numeric(s, errors="raise").astype("float64")
    if kind == NUMERIC:
        return s.map(lambda v: None if v is None or (isinstance(v, decimal.Decimal) and v.is_nan()) else v)
    if kind == JSON:
        return s.map(_json_text)
    return s


def to_arrow(batch: pd.DataFrame) -> pa.Table:
    try:
        return pa.Table.from_pandas(batch, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise WarehouseError(f"cannot convert the DataFrame for loading: {exc}") from exc


def iter_batches(df: pd.DataFrame, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """Row slices of ``df`` (views, no copy) so conversion memory is bounded by one batch."""
    if batch_rows <= 0:
        raise ValueError("batch_rows must be positive")
    for start in range(0, len(df), batch_rows):
        yield df.iloc[start : start + batch_rows]


def _arrow_column_to_pandas(column: pa.ChunkedArray) -> pd.Series | np.ndarray:
    arrow_type = column.type
    has_nulls = column.null_count > 0
    if pa.types.is_integer(arrow_type) or (pa.types.is_decimal(arrow_type) and arrow_type.scale == 0):
        column = column.cast(pa.int64())
        if has_nulls:
            return column.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        return column.to_numpy()
    if pa.types.is_decimal(arrow_type) or pa.types.is_floating(arrow_type):
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(arrow_type):
        if has_nulls:
            return column.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return pd.to_datetime(column.to_pandas(), utc=True)
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return pd.to_datetime(column.to_pandas())
    return column.to_pandas()


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A query result as a DataFrame with the dtypes DuckDB's ``.df()`` gives: int64 (Int64 with
    nulls) for integers and NUMBER(p,0), float64 for other numbers, bool (boolean with nulls),
    datetime64 for dates and timestamps (UTC for zoned ones), Python objects for the rest."""
    return pd.DataFrame(
        {name: _arrow_column_to_pandas(column) for name, column in zip(table.column_names, table.columns, strict=True)},
        columns=table.column_names,
    )
