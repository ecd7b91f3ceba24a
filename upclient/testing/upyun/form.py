"""The UPYUN FORM API: a browser's upload, authorised by a signed policy, with return-url and notify-url.

The policy (base64 JSON) names the service, the ``save-key`` template and
the checks the file must pass; the answer is JSON, or a 302 to the
``return-url``; a ``notify-url`` gets the same result in a signed callback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlencode

from upclient.testing.upyun.auth import Authenticating
from upclient.testing.upyun.faults import FaultPoints
from upclient.testing.upyun.formdata import FormError, FormReader
from upclient.testing.upyun.images import image_info
from upclient.testing.upyun.notify import Notifier
from upclient.testing.upyun.records import FileRecord
from upclient.testing.upyun.store import log
from upclient.testing.upyun.wire import (
    SECRET_RE,
    Answer,
    Call,
    Refusal,
    bad,
    content_type_for,
    json_answer,
    normalise_key,
)

__all__ = ["FormUpload", "save_key"]

_MAX_FIELD = 64 * 1024


def save_key(template: str, *, now: float, filename: str, md5: str) -> str:
    """A policy's save-key with its placeholders filled in (the time from the server clock, UTC)."""
    moment = time.gmtime(now)
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    values = {
        "year": f"{moment.tm_year:04d}",
        "mon": f"{moment.tm_mon:02d}",
        "day": f"{moment.tm_mday:02d}",
        "hour": f"{moment.tm_hour:02d}",
        "min": f"{moment.tm_min:02d}",
        "sec": f"{moment.tm_sec:02d}",
        "filemd5": md5,
        "filename": stem,
        "suffix": suffix,
        ".suffix": f".{suffix}" if suffix else "",
    }

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name == "random":
            return secrets.token_hex(8)
        if name == "random32":
            return secrets.token_hex(16)
        return values.get(name, match.group(0))

    return re.sub(r"\{(\.?[a-z0-9]+)\}", fill, template)


class FormUpload(Authenticating, FaultPoints, Notifier):
    """The FORM upload handler."""

    def _form(self, call: Call, service: str) -> Answer:
        self._count("form")
        content_type = call.header("Content-Type") or ""
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if not content_type.lower().startswith("multipart/form-data") or match is None:
            raise Refusal(415, 41500001, "media type error, need content-type")
        fields: Dict[str, str] = {}
        tmp = self._tmp_path()
        got_file: Optional[Tuple[str, int, str]] = None  # file name, size, md5
        try:
            try:
                for part, content in FormReader(call.body, match.group(1)).parts():
                    if part.name == "file" and got_file is None:
                        digest = hashlib.md5()
                        size = 0
                        with open(tmp, "wb") as out:
                            for block in content:
                                digest.update(block)
                                size += len(block)
                                out.write(block)
                        got_file = (part.filename or "", size, digest.hexdigest())
                    elif part.name != "file":
                        value = b""
                        for block in content:
                            value += block
                            if len(value) > _MAX_FIELD:
                                raise bad(f"form field {part.name!r} too long")
                        fields[part.name] = value.decode("utf-8", "replace")
            except FormError as exc:
                raise Refusal(400, 40000002, f"malformed multipart body: {exc}") from None
            return self._form_store(call, service, fields, tmp, got_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _form_store(
        self, call: Call, service: str, fields: Mapping[str, str], tmp: Path, got_file: Optional[Tuple[str, int, str]]
    ) -> Answer:
        policy_text = fields.get("policy")
        if not policy_text:
            raise Refusal(400, 40000007, "need policy")
        operator, sig = self._credentials(fields.get("authorization") or call.header("Authorization"))
        try:
            policy = json.loads(base64.b64decode(policy_text.encode("ascii"), validate=True).decode("utf-8"))
        except (ValueError, UnicodeError, binascii.Error):
            raise Refusal(400, 40000009, "decode policy error") from None
        if not isinstance(policy, dict):
            raise Refusal(400, 40000009, "decode policy error")
        bucket = policy.get("bucket") or policy.get("service")
        if bucket != service:
            raise Refusal(400, 40000003, "need bucket name" if not bucket else "bucket name not match")
        date = str(policy.get("date") or call.header("X-Date") or call.header("Date") or "")
        content_md5 = policy.get("content-md5")
        content_md5 = str(content_md5) if content_md5 else None
        password = self._check_form_signature(service, operator, sig, date, policy_text, content_md5)
        expiration = policy.get("expiration")
        if expiration is None or expiration == "":
            raise Refusal(400, 40000004, "need expiration")
        try:
            expires = int(expiration)
        except (TypeError, ValueError):
            raise Refusal(400, 40000009, "decode policy error") from None
        if expires < self.clock():
            raise Refusal(403, 40300006, "authorization has expired")
        template = policy.get("save-key")
        if not template or not isinstance(template, str):
            raise Refusal(400, 40000001, "need save-key")
        self._fault_point(call, ("form",), "")
        return_url = policy.get("return-url")
        try:
            result = self._form_check_and_place(service, policy, template, tmp, got_file)
        except Refusal as exc:
            if not return_url:
                raise
            result = {"code": exc.code, "message": exc.msg, "time": int(self.clock())}
        else:
            notify = policy.get("notify-url")
            if notify:
                body = urlencode({k: str(v) for k, v in result.items()}).encode("ascii")
                self._callback("form", str(notify), body, "application/x-www-form-urlencoded", operator, password)
        if return_url:
            location = str(return_url) + ("&" if "?" in str(return_url) else "?") + urlencode(result)
            return Answer(302, {"Location": location})
        return json_answer(200, result)

    def _form_check_and_place(
        self,
        service: str,
        policy: Mapping[str, Any],
        template: str,
        tmp: Path,
        got_file: Optional[Tuple[str, int, str]],
    ) -> Dict[str, Any]:
        if got_file is None:
            raise Refusal(400, 40000005, "need file")
        filename, size, md5 = got_file
        declared = policy.get("content-md5")
        if declared and str(declared).lower() != md5:
            raise Refusal(403, 40300007, "content md5 not match")
        bounds = policy.get("content-length-range")
        if bounds:
            try:
                low, high = (int(x) for x in str(bounds).split(","))
            except ValueError:
                raise bad("content-length-range must be min,max") from None
            if size < low:
                raise Refusal(403, 40300008, "file too small")
            if size > high:
                raise Refusal(403, 40300009, "file too large")
        allowed = policy.get("allow-file-type")
        if allowed:
            kinds = {k.strip().lower().lstrip(".") for k in str(allowed).split(",") if k.strip()}
            suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
            if suffix not in kinds:
                raise Refusal(403, 40300010, "file type error")
        secret = policy.get("content-secret")
        if secret is not None and not SECRET_RE.match(str(secret)):
            raise Refusal(403, 40300016, "content-secret only accept [a-zA-Z0-9]")
        now = self.clock()
        key = normalise_key(save_key(template, now=now, filename=filename, md5=md5))
        if not key:
            raise Refusal(400, 40000001, "need save-key")
        meta = {str(k).lower(): str(v) for k, v in policy.items() if str(k).lower().startswith("x-upyun-meta-")}
        content_type = str(policy.get("content-type") or content_type_for(key))
        image = image_info(tmp)
        self._place(service, key, tmp, FileRecord(content_type, size, md5, now, meta, secret and str(secret)))
        log.debug("form %s/%s: %d bytes", service, key, size)
        result: Dict[str, Any] = {"code": 200, "message": "ok", "url": "/" + key, "time": int(now)}
        if image is not None:
            result.update(
                {"image-width": image[0], "image-height": image[1], "image-frames": image[2], "image-type": image[3]}
            )
        if policy.get("ext-param") is not None:
            result["ext-param"] = policy["ext-param"]
        return result
