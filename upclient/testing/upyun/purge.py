"""The UPYUN purge API: ``POST /purge/`` with the CDN URLs to refresh, signed its own way, at most 600 a minute."""

from __future__ import annotations

from typing import Iterable, List
from urllib.parse import urlsplit

from upclient.testing.upyun.auth import Authenticating
from upclient.testing.upyun.faults import FaultPoints
from upclient.testing.upyun.wire import MAX_SMALL_BODY, Answer, Call, Refusal, bad, json_answer, urlencoded_fields

__all__ = ["Purging"]

_PURGE_PER_MINUTE = 600


class Purging(Authenticating, FaultPoints):
    """The purge handler, and :attr:`purged` to see what it accepted."""

    #: More domains a purge may name, besides ``<service>.b0.upaiyun.com``.
    domains: Iterable[str]

    @property
    def purged(self) -> List[str]:
        """Every URL a purge request accepted, in order."""
        with self._lock:
            return list(self._purged)

    def _purge(self, call: Call) -> Answer:
        self._count("purge")
        raw = call.body.read_all(MAX_SMALL_BODY)
        if raw is None:
            raise bad("purge body too large")
        fields = urlencoded_fields(raw)
        service, operator, digest = self._purge_credentials(call)
        date = self._signed_date(call)
        password = self._check_access(service, operator)
        urls_text = fields.get("purge")
        if urls_text is None:
            raise bad("purge (the URLs) required")
        self._check_purge_signature(service, password, urls_text, date, digest)
        self._fault_point(call, ("purge",), "")
        urls = [u.strip() for u in urls_text.split("\n") if u.strip()]
        now = self.clock()
        valid_hosts = {f"{service}.b0.upaiyun.com", *self.domains}
        with self._lock:
            recent = [(t, n) for t, n in self._purge_times.get(service, []) if now - t < 60]
            if sum(n for _, n in recent) + len(urls) > _PURGE_PER_MINUTE:
                self._purge_times[service] = recent
                raise Refusal(406, 40600003, "too many purge urls, at most 600 a minute")
            self._purge_times[service] = recent + [(now, len(urls))]
            invalid = [u for u in urls if urlsplit(u).hostname not in valid_hosts]
            self._purged.extend(u for u in urls if u not in invalid)
        return json_answer(200, {"invalid_domain_of_url": invalid})
