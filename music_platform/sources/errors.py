"""Typed errors of the API clients (Last.fm, Spotify), shared by the HTTP layer.

Callers decide by *type*, never by parsing messages:

- ``TransientSourceError`` (and ``RateLimitedError``): worth retrying; the HTTP layer already
  retried until its deadline, so seeing one outside it means "try the run again later".
- ``PermanentSourceError``: retrying cannot help. Its subclasses say what to do:
  ``InvalidCredentialsError`` is fatal for the whole source (fix the key/secret);
  ``NotFoundError`` and ``AccessDeniedError`` concern one entity (a user, an artist) and are
  ``skippable``: a per-user job records them and carries on with the other users;
  ``CapabilityUnavailableError`` means the API no longer offers that endpoint to this app.
- ``ResponseFormatError``: the body is not what the contract says (HTML page, bad JSON shape).

Every message is written for an operator (what failed, what to do) and never contains a
secret: the HTTP layer redacts keys and tokens before building any exception.
"""

from __future__ import annotations

from collections.abc import Mapping


class SourceError(RuntimeError):
    """Base of every API client error.

    ``source`` is 'lastfm' or 'spotify'; ``status`` the HTTP status when there was one;
    ``operation`` names the call ('user.getrecenttracks', 'GET /tracks').
    """

    retryable: bool = False
    #: The failure concerns one entity (a user, an artist): skip it and carry on.
    skippable: bool = False
    #: The failure concerns the whole source (bad credentials): stop every call to it.
    fatal: bool = False

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        status: int | None = None,
        operation: str = "",
        context: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.status = status
        self.operation = operation
        self.context = dict(context or {})
        #: How many attempts the HTTP layer made before raising (set by ``HttpClient``).
        self.attempts = 1

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Keep the keyword arguments when the error crosses a process boundary (Dagster).
        return (
            _rebuild_error,
            (type(self), self.message, self.source, self.status, self.operation, self.context, self.__dict__),
        )


def _rebuild_error(cls, message, source, status, operation, context, state):
    error = cls.__new__(cls)
    SourceError.__init__(error, message, source=source, status=status, operation=operation, context=context)
    error.__dict__.update(state)
    return error


class TransientSourceError(SourceError):
    """A temporary failure (5xx, timeout, connection reset, Last.fm 8/11/16): retry later."""

    retryable = True


class RateLimitedError(TransientSourceError):
    """The API asked us to slow down (HTTP 429, Last.fm error 29).

    ``retry_after`` is the wait the server asked for in seconds (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PermanentSourceError(SourceError):
    """Retrying the same request cannot succeed."""

    retryable = False


class InvalidCredentialsError(PermanentSourceError):
    """The API key / client secret is wrong, suspended or missing: fatal for the source."""

    fatal = True


class AuthenticationExpiredError(PermanentSourceError):
    """A bearer token was rejected (HTTP 401); the HTTP layer refreshes it once, then raises this."""


class NotFoundError(PermanentSourceError):
    """The user/artist/track asked for does not exist."""

    skippable = True


class AccessDeniedError(PermanentSourceError):
    """The entity exists but its data is private (Last.fm error 17)."""

    skippable = True


class CapabilityUnavailableError(PermanentSourceError):
    """The endpoint is not available to this app any more (Spotify 403 on a withdrawn endpoint)."""


class InvalidRequestError(PermanentSourceError):
    """The request itself is malformed (bad parameter, unknown method): a bug on our side."""


class ResponseFormatError(SourceError):
    """The body is not the JSON shape the contract promises.

    ``retryable`` is set per instance: an HTML error page from the load balancer is worth
    retrying, a well-formed JSON body without the expected keys is not.
    """

    def __init__(self, message: str, *, retryable: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable


# -- Last.fm -------------------------------------------------------------------------------


class LastfmApiError(SourceError):
    """A Last.fm error body ``{"error": N, "message": "..."}`` (it can arrive with HTTP 200).

    ``code`` is Last.fm's error number and ``api_message`` its own text. Concrete classes
    below combine this with the generic categories so callers can catch either.
    """

    def __init__(self, message: str, *, code: int, api_message: str = "", **kwargs) -> None:
        kwargs.setdefault("source", "lastfm")
        super().__init__(message, **kwargs)
        self.code = code
        self.api_message = api_message


class LastfmTransientError(LastfmApiError, TransientSourceError):
    """Last.fm 8 (operation failed), 11 (service offline), 16 (temporary error)."""


class LastfmRateLimitError(LastfmApiError, RateLimitedError):
    """Last.fm 29 (rate limit exceeded)."""


class LastfmInvalidApiKeyError(LastfmApiError, InvalidCredentialsError):
    """Last.fm 10 (invalid key), 26 (suspended key), 4 (authentication failed)."""


class LastfmNotFoundError(LastfmApiError, NotFoundError):
    """Last.fm 6 when the message says the user/artist/track was not found."""


class LastfmPrivateDataError(LastfmApiError, AccessDeniedError):
    """Last.fm 17 (login required: the user hides their listening history)."""


class LastfmInvalidRequestError(LastfmApiError, InvalidRequestError):
    """Last.fm 2, 3, 5, 6 (bad parameter), 7, 9, 13 and any code we do not know."""
