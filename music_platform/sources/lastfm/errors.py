"""Turn a Last.fm error body into a typed exception with an operator-facing message.

Last.fm answers errors as ``{"error": N, "message": "...", "links": []}``, sometimes with
HTTP 200, so the body is checked on every status. Codes and the HTTP statuses seen for
them: ``/work/shared/reference/API-CONTRACTS.md`` section 1.4 and
``docs/data-source/stream-source-validation.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from music_platform.sources.errors import (
    LastfmApiError,
    LastfmInvalidApiKeyError,
    LastfmInvalidRequestError,
    LastfmNotFoundError,
    LastfmPrivateDataError,
    LastfmRateLimitError,
    LastfmTransientError,
)

#: Codes worth retrying with backoff (8 operation failed, 11 offline, 16 temporary, 29 rate limit).
RETRYABLE_CODES = frozenset({8, 11, 16, 29})
#: Codes that mean the key itself is unusable.
CREDENTIAL_CODES = frozenset({4, 10, 26})

API_KEY_ENV = "LASTFM_API_KEY"
USERS_ENV = "LASTFM_USERS"


def find_api_error(payload: Any) -> tuple[int, str] | None:
    """``(code, message)`` when ``payload`` is a Last.fm error body, else None."""
    if not isinstance(payload, Mapping) or "error" not in payload:
        return None
    raw_code = payload.get("error")
    try:
        code = int(raw_code)
    except (TypeError, ValueError):
        # {"error": "something"} is still an error body; -1 marks an unknown code.
        code = -1
    return code, str(payload.get("message") or "")


def _subject(context: Mapping[str, object]) -> str:
    for key, label in (("user", "user"), ("artist", "artist"), ("track", "track"), ("tag", "tag")):
        if context.get(key):
            return f"{label} {context[key]!r}"
    return ""


def lastfm_error(
    code: int,
    api_message: str,
    *,
    operation: str = "",
    status: int | None = None,
    context: Mapping[str, object] | None = None,
    retry_after: float | None = None,
) -> LastfmApiError:
    """The typed exception for one Last.fm error code, with a message saying what to do."""
    context = dict(context or {})
    subject = _subject(context)
    where = f"Last.fm {operation}" if operation else "Last.fm"
    said = f"(error {code}: {api_message})" if api_message else f"(error {code})"
    common = {"code": code, "api_message": api_message, "operation": operation, "status": status, "context": context}

    if code in (10, 4):
        return LastfmInvalidApiKeyError(
            f"{where} rejected the API key {said}. Check {API_KEY_ENV}: it must be an API key from "
            "https://www.last.fm/api/account/create (the 32-character key, not the shared secret).",
            **common,
        )
    if code == 26:
        return LastfmInvalidApiKeyError(
            f"{where}: the API key is suspended {said}. Contact Last.fm or set another key in {API_KEY_ENV}.",
            **common,
        )
    if code == 29:
        return LastfmRateLimitError(
            f"{where}: rate limit exceeded {said}. The client backs off; if this persists, lower the "
            "request rate (Last.fm allows 5 requests/s per IP averaged over 5 minutes) or run fewer processes.",
            retry_after=retry_after,
            **common,
        )
    if code in (8, 11, 16):
        return LastfmTransientError(f"{where} failed temporarily {said}; it is retried with backoff.", **common)
    if code == 17:
        target = subject or "the user"
        return LastfmPrivateDataError(
            f"{where}: {target} hides their listening history {said}. Remove them from {USERS_ENV} "
            "or ask them to make their recent listening public in their Last.fm privacy settings.",
            **common,
        )
    lowered = api_message.lower()
    if code == 6 and ("not found" in lowered or "could not be found" in lowered):
        if context.get("user"):
            hint = f"Check the spelling in {USERS_ENV} or remove that user."
        else:
            hint = "Last.fm does not know it; the row is skipped."
        return LastfmNotFoundError(f"{where}: {subject or 'the item'} was not found {said}. {hint}", **common)
    return LastfmInvalidRequestError(
        f"{where} refused the request {said}. This is a bug in the request we built; "
        "please report it with this message.",
        **common,
    )
