"""Notify callbacks, as UPYUN sends them after a FORM upload or a processing task: signed POSTs to the caller.

Only loopback URLs are called (any other is recorded, never contacted),
each from its own thread, signed over ``POST&<path[?query]>&<Date>&<Content-MD5>``
with the operator's password.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from upclient.testing.upyun.signatures import format_date, rest_authorization
from upclient.testing.upyun.store import UpyunStore, log

__all__ = ["Notifier"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Notifier(UpyunStore):
    """Sends the callbacks and keeps a record of each."""

    #: Seconds a callback may take.
    callback_timeout: float

    @property
    def callbacks(self) -> List[Dict[str, Any]]:
        """Notify callbacks: ``{"kind": "form"|"task", "url", "body", "headers", "done", "status",
        "error"}`` each (``status`` the receiver's HTTP status; ``error`` why it failed or was not sent)."""
        with self._lock:
            return [dict(c, headers=dict(c["headers"])) for c in self._callbacks]

    def wait_callbacks(self, timeout: float = 5.0) -> bool:
        """Wait until every callback so far is done; whether that happened in time."""
        with self._callbacks_done:
            return self._callbacks_done.wait_for(lambda: all(c["done"] for c in self._callbacks), timeout)

    def _join_callbacks(self, timeout: float) -> None:
        """Wait for the callbacks in flight (each may take ``callback_timeout``), then ``timeout`` more at most."""
        with self._lock:
            threads = list(self._callback_threads)
        deadline = time.monotonic() + self.callback_timeout + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _callback(self, kind: str, url: str, body: bytes, content_type: str, operator: str, password: str) -> None:
        record: Dict[str, Any] = {
            "kind": kind, "url": url, "body": body, "headers": {}, "done": False, "status": None, "error": None,
        }  # fmt: skip
        split = urlsplit(url)
        if split.scheme != "http" or split.hostname not in _LOOPBACK:
            record.update(done=True, error="not sent: only http://127.0.0.1, localhost or [::1] URLs are called")
            with self._lock:
                self._callbacks.append(record)
            return
        thread = threading.Thread(
            target=self._deliver,
            args=(record, content_type, operator, password),
            name=f"UpyunServer-callback-{len(self._callbacks) + 1}",
            daemon=True,
        )
        with self._lock:
            self._callbacks.append(record)
            self._callback_threads = [t for t in self._callback_threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, record: Dict[str, Any], content_type: str, operator: str, password: str) -> None:
        split = urlsplit(record["url"])
        uri = (split.path or "/") + ("?" + split.query if split.query else "")
        body: bytes = record["body"]
        date = format_date(self.clock())
        md5 = hashlib.md5(body).hexdigest()
        headers = {
            "Date": date,
            "Content-MD5": md5,
            "Content-Type": content_type,
            "Authorization": rest_authorization(operator, password, "POST", uri, date, md5),
            "User-Agent": "UpyunEmulator/1.0",
        }
        status: Optional[int] = None
        error: Optional[str] = None
        connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80,
                                                timeout=self.callback_timeout)  # fmt: skip
        try:
            connection.request("POST", uri, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        log.debug("callback %s -> %s", record["url"], status or error)
        with self._callbacks_done:
            record.update(headers=headers, status=status, error=error, done=True)
            self._callbacks_done.notify_all()
