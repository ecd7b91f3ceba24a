"""The exit statuses of the ``upclient`` command: what a wrapper can do next.

A cron job or a retry loop reads them to decide whether to try again:

=====  ==========================================================================
0      all done
1      failed in a way a retry is not known to fix (an unexpected answer, a conflict)
2      usage: a bad flag, URL or argument; nothing was sent
3      credentials or permissions refused (401, 403): no retry will help
4      not found: the id, key or file named does not exist
5      some or all files failed with errors a retry may fix (network, timeout, 5xx, 429)
6      another run of the same job holds its lock; nothing was done
130    interrupted (Ctrl-C, SIGINT); run the same command again to resume
=====  ==========================================================================

When files fail for different reasons, the status is that of the one that
needs a person most: usage, then credentials, then not found, then "retry".
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..errors import AuthError, BadInput, Cancelled, NotFound, RateLimited, ServiceError, TLSError, TransportError

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_NOT_FOUND",
    "EXIT_RETRY",
    "EXIT_LOCKED",
    "EXIT_INTERRUPTED",
    "exit_status",
    "worst_status",
    "EPILOG",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_RETRY = 5
EXIT_LOCKED = 6
EXIT_INTERRUPTED = 130

#: The order in which a status wins when several files failed: the first needs a person most.
_PRECEDENCE = (EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_FAILED, EXIT_RETRY, EXIT_LOCKED, EXIT_INTERRUPTED)

#: The exit statuses as ``--help`` lists them.
EPILOG = """exit status:
  0    all done
  1    failed; a retry is not known to help
  2    usage error; nothing was sent
  3    credentials or permissions refused; no retry will help
  4    not found
  5    some files failed; a retry may help (network, timeout, 5xx, 429)
  6    another run of the same job holds its lock
  130  interrupted; run the same command again to resume"""


def exit_status(error: Optional[BaseException]) -> int:
    """The exit status one error calls for (0 for None)."""
    if error is None:
        return EXIT_OK
    if isinstance(error, BadInput):
        return EXIT_USAGE
    if isinstance(error, AuthError):
        return EXIT_AUTH
    if isinstance(error, (NotFound, FileNotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(error, (Cancelled, KeyboardInterrupt)):
        return EXIT_INTERRUPTED
    if isinstance(error, TLSError):  # an untrusted certificate stays untrusted: a person must act
        return EXIT_FAILED
    if isinstance(error, (TransportError, ServiceError, RateLimited)) or getattr(error, "retryable", False):
        return EXIT_RETRY
    return EXIT_FAILED


def worst_status(statuses: Iterable[int]) -> int:
    """The status of a run whose parts ended with ``statuses``: the one that needs a person most."""
    found = {s for s in statuses if s != EXIT_OK}
    for status in _PRECEDENCE:
        if status in found:
            return status
    return EXIT_OK if not found else max(found)
