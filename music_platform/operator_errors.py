"""One line for the operator when a command cannot start: what failed, where, and the likely fix.

The command line shows these instead of a traceback (``music-platform --debug ...`` shows the
traceback too). Only errors whose cause is outside the code are turned into one line: a setting
(``ConfigError``) or a warehouse that cannot be reached or refuses the credentials
(``WarehouseError``). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

from music_platform.config import ConfigError
from music_platform.warehouse import WarehouseError

# (pattern in the message, likely fix); the first match wins.
_WAREHOUSE_FIXES: tuple[tuple[str, str], ...] = (
    (
        r"password authentication failed|authentication failed|role .* does not exist",
        "check the user and password in MUSIC_PLATFORM_POSTGRES_URL",
    ),
    (
        r"PostgreSQL.*(refused|could not connect|timeout|timed out|Name or service not known|resolve)",
        "is PostgreSQL running there? Check the host and port in MUSIC_PLATFORM_POSTGRES_URL",
    ),
    (r"PostgreSQL", "check MUSIC_PLATFORM_POSTGRES_URL (postgresql://user:password@host:5432/database)"),
    (
        r"(?i)snowflake.*(incorrect username or password|authenticat|password)",
        "check SNOWFLAKE_USER and SNOWFLAKE_PASSWORD",
    ),
    (
        r"(?i)snowflake",
        "check SNOWFLAKE_ACCOUNT (and SNOWFLAKE_HOST/PORT/PROTOCOL if set) and that the account is reachable",
    ),
    (r"(?i)duckdb|\.duckdb", "check MUSIC_PLATFORM_DUCKDB_PATH, or run the pipeline first (music-platform demo)"),
)

OPERATOR_ERRORS = (ConfigError, WarehouseError)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def operator_message(error: BaseException) -> str | None:
    """The one-line explanation of an operator error, or None for anything else (a bug)."""
    if isinstance(error, ConfigError):
        return f"configuration error: {one_line(str(error))} (set it in the environment or in .env; see .env.example)"
    if isinstance(error, WarehouseError):
        message = one_line(str(error))
        fix = next((hint for pattern, hint in _WAREHOUSE_FIXES if re.search(pattern, message)), None)
        return f"warehouse error: {message}" + (f". Likely fix: {fix}" if fix else "")
    return None
