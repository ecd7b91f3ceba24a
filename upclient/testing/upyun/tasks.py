"""UPYUN processing tasks (``p0.api.upyun.com``): submit, status, result, and the callback when one is done.

A task's progress grows linearly with the server clock to 100 over
``task_duration`` seconds; a ticker thread sends the callbacks of the tasks
that finished.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
from typing import Any, Dict, List, Optional
from urllib.parse import urlencode

from upclient.testing.upyun.auth import Authenticating
from upclient.testing.upyun.faults import FaultPoints
from upclient.testing.upyun.notify import Notifier
from upclient.testing.upyun.records import Task
from upclient.testing.upyun.wire import MAX_SMALL_BODY, Answer, Call, Refusal, bad, json_answer, urlencoded_fields

__all__ = ["TaskQueue"]

_MAX_TASKS = 10
_MAX_STATUS_IDS = 20


class TaskQueue(Authenticating, FaultPoints, Notifier):
    """The task handlers, :meth:`tasks` to look at them, and the ticker that notifies."""

    #: Seconds a task takes to reach 100.
    task_duration: float
    _ticker: Optional[threading.Thread] = None
    _ticker_stop: threading.Event

    def tasks(self) -> Dict[str, Dict[str, Any]]:
        """Processing tasks: id -> ``{"service", "source", "task", "app_name", "notify_url", "progress"}``."""
        now = self.clock()
        with self._lock:
            return {
                t.id: {
                    "service": t.service,
                    "source": t.source,
                    "task": t.spec,
                    "app_name": t.app_name,
                    "notify_url": t.notify_url,
                    "progress": self._progress(t, now),
                }
                for t in self._tasks.values()
            }

    def _start_ticker(self) -> None:
        self._ticker_stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="UpyunServer-tasks", daemon=True)
        self._ticker.start()

    def _stop_ticker(self, timeout: float) -> None:
        if self._ticker is not None:
            self._ticker_stop.set()
            self._ticker.join(timeout)
            self._ticker = None

    def _pretreat(self, call: Call) -> Answer:
        self._count("pretreat")
        raw = call.body.read_all(MAX_SMALL_BODY)
        if raw is None:
            raise bad("request body too large")
        fields = urlencoded_fields(raw)
        service = fields.get("service", "")
        if not service:
            raise bad("service required")
        operator, _ = self._authenticate(call, service)
        self._check_body_md5(call, hashlib.md5(raw).hexdigest())
        try:
            specs = json.loads(base64.b64decode(fields.get("tasks", "")).decode("utf-8"))
        except (ValueError, UnicodeError, binascii.Error):
            raise Refusal(400, 40000009, "decode tasks error") from None
        if not isinstance(specs, list) or not 1 <= len(specs) <= _MAX_TASKS:
            raise bad(f"tasks must be a list of 1 to {_MAX_TASKS}")
        self._fault_point(call, ("pretreat",), "")
        now = self.clock()
        made = [Task(secrets.token_hex(16), service, operator, spec, fields, now) for spec in specs]
        with self._lock:
            self._tasks.update((t.id, t) for t in made)
        return json_answer(200, [t.id for t in made])

    def _progress(self, task: Task, now: float) -> int:
        if self.task_duration <= 0:
            return 100
        return max(0, min(100, int((now - task.created) * 100 / self.task_duration)))

    def _result(self, task: Task) -> Dict[str, Any]:
        spec = task.spec if isinstance(task.spec, dict) else {}
        save_as = spec.get("save_as")
        return {
            "service": task.service,
            "status_code": 200,
            "path": [save_as] if save_as else [],
            "description": "OK",
            "task_id": task.id,
            "info": None,
            "source": task.source,
            "timestamp": int(task.created + self.task_duration),
        }

    def _task_query(self, call: Call, name: str) -> Answer:
        route = "status" if name == "status" else "result"
        self._count(route)
        query = call.query_fields()
        service = query.get("service", "")
        if not service:
            raise bad("service required")
        self._authenticate(call, service)
        ids = [i.strip() for i in query.get("task_ids", "").split(",") if i.strip()]
        if not ids or len(ids) > _MAX_STATUS_IDS:
            raise bad(f"task_ids: 1 to {_MAX_STATUS_IDS} ids")
        self._fault_point(call, (route,), "")
        now = self.clock()
        answer: Dict[str, Any] = {}
        with self._lock:
            for task_id in ids:
                task = self._tasks.get(task_id)
                if task is None or task.service != service:
                    answer[task_id] = None
                elif route == "status":
                    answer[task_id] = self._progress(task, now)
                else:
                    answer[task_id] = self._result(task) if self._progress(task, now) >= 100 else None
        return json_answer(200, {"tasks": answer})

    def _tick(self) -> None:
        """Send the callbacks of finished tasks, until stopped."""
        while not self._ticker_stop.wait(0.05):
            now = self.clock()
            due: List[Task] = []
            with self._lock:
                for task in self._tasks.values():
                    if not task.notified and task.notify_url and self._progress(task, now) >= 100:
                        task.notified = True
                        due.append(task)
            for task in due:
                result = self._result(task)
                if task.accept == "json":
                    body, kind = json.dumps(result).encode("utf-8"), "application/json"
                else:
                    flat = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in result.items()}
                    body, kind = urlencode(flat).encode("ascii"), "application/x-www-form-urlencoded"
                self._callback("task", task.notify_url, body, kind, task.operator, self._operators[task.operator])
