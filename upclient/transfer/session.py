"""The seam between the transfer engine and the backends: :class:`UploadSession`.

A backend speaks one protocol and nothing else.  For an upload it makes an
:class:`UploadSession` (new, or from the state a store kept) without any I/O;
the engine then asks it to :meth:`~UploadSession.start`, to say which
:class:`~upclient.transfer.parts.Part` objects remain and whether they may
travel in parallel, to send one part (one request, or the few its protocol
needs), to re-synchronise after a conflict, to finish and to abort, and to
show its state as plain JSON after every part.  Every one of those requests
is issued from a thread the engine bound to the call's deadline and cancel
token.  The engine owns threads, ordering, retries, progress, cancellation
and the store; a session never sleeps, retries, prints or starts a thread.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Union

from ..result import UploadResult
from .hints import Hint, MoreParts
from .parts import Part, PartIO

__all__ = ["UploadSession"]


class UploadSession:
    """One upload in progress on one backend; see the module docstring.

    ``parallel`` says whether :meth:`send_part` may run for several parts at
    once (then it must be thread-safe).  ``done_bytes`` is what the server
    already holds when the session opens (a resume), for progress.
    """

    parallel: bool = False
    resumed: bool = False
    done_bytes: int = 0
    #: When the server will forget this upload (epoch seconds), if it says.
    expires: Optional[float] = None
    #: The server-side handle, once there is one (shown in the resume point).
    upload_id: Optional[str] = None
    #: How many parts the whole upload has, done or not, where known.
    parts_total: Optional[int] = None
    #: Set by the client before ``start`` when the upload must be named before any
    #: of its bytes go (a journaled put saves its resume point first): do not
    #: create an upload whose name comes back only with its bytes (tus:
    #: no creation-with-upload).
    point_first: bool = False

    def start(self) -> Optional["UploadSession"]:
        """Talk to the server to open the upload: create it, or re-synchronise a
        stored one.  Called by the engine, under its retry policy and the call's
        deadline; a session's constructor never does I/O.

        Where what the server offers decides the kind of upload (tus: serial
        or concatenated), ``start`` returns the session that carries it, and
        the engine goes on with that one; None keeps this session.
        """
        return None

    def pending_parts(self) -> Iterable[Part]:
        """The parts still to send, for a source of known size."""
        raise NotImplementedError

    def send_part(self, part: Part, io: PartIO) -> Optional[Hint]:
        """Send one part.

        Returns None once the server holds it, or a :data:`Hint` when the
        server's answer says what to do instead (re-synchronise, start
        afresh); the engine then calls :meth:`recover` with it and sends the
        part again.  A failure raises a :mod:`upclient.errors` error.  A
        session whose parts must go in order may also return None for a part
        it cannot send yet (one before it is missing on the server) and hand
        it back from :meth:`finish` as :class:`MoreParts`.
        """
        raise NotImplementedError

    def recover(self, part: Part, cause: Union[BaseException, Hint]) -> None:
        """Re-synchronise with the server before ``part`` is tried again.

        ``cause`` is the error of the failed try, or the hint it returned.
        """

    def confirmed(self, part: Part) -> int:
        """Bytes of ``part`` the server is known to hold (a failed try may still
        have advanced it); the engine gives a part that advances more tries."""
        return 0

    def finish(self) -> Union[UploadResult, MoreParts]:
        """Complete the upload once every part is sent.

        A session that learns here that the server lacks parts (an upload the
        server forgot, a gap) returns :class:`MoreParts`; the engine sends
        them, with retries, progress and cancel, and calls finish again.
        """
        raise NotImplementedError

    def abort(self) -> None:
        """Give up: free what the server holds for this upload, if it can."""

    def state(self) -> Optional[Dict[str, Any]]:
        """Plain JSON to resume from in another process; None if not resumable."""
        return None
