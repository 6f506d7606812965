"""Connector errors. Messages tell an admin what to fix and never contain a secret."""

from __future__ import annotations

from canonical.errors import LtcError


class ConnectorError(LtcError):
    """A source system refused or failed a request in a way retrying will not fix."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(ConnectorError):
    """Credentials were rejected (401, bad token, expired session that re-login did not fix).

    An operator fixes it (the credentials in ltc.yaml or their variable / Secret block): exit 2."""

    exit_code = 2


class PermissionDenied(ConnectorError):
    """The credentials work but lack a scope or permission (403): an operator grants it (exit 2)."""

    exit_code = 2


class Unreachable(ConnectorError):
    """The server cannot be reached at all (DNS, refused connection, TLS certificate not trusted)
    after the retries: an operator fixes ``base_url``, the network or ``ca_file`` (exit 2)."""

    exit_code = 2


class NotFound(ConnectorError):
    """The object or endpoint does not exist (404)."""


class QuotaPaused(ConnectorError):
    """The vendor's quota (daily API allocation) is nearly or fully used: stop with state saved.

    The sync engine reports the stream as ``paused`` (never as a success with partial data); the
    next run resumes from the saved checkpoint.
    """


class PagingBroken(ConnectorError):
    """The source's paging does not move forward (the same page token, cursor or window bound
    twice, ``has_more`` with an empty page): reading on would never end. The sync engine ends the
    stream ``incomplete`` with this message; the pages already committed stay."""


class RetryableError(Exception):
    """Internal: a response worth retrying (429, 5xx, transport error), with the server's wait hint."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 in_the_way: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        # something other than the API answers (a proxy's or a single sign-on page): if it still does after the
        # retries, an operator fixes base_url or the network (exit 2), not a fault of the source
        self.in_the_way = in_the_way
