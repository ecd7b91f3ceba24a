"""``upclient sync``: a tree or a backend's files made present on a backend, re-runs doing only what is left.

One module a job: :mod:`.walk` (the files of a local tree), :mod:`.listing`
(what a backend holds, as a source and as a destination), :mod:`.plan` (what
to upload, skip, check or delete), :mod:`.copy` (backend to backend through
memory), :mod:`.lock` (one run of a job at a time) and :mod:`.run` (the plan
carried out on ``put_many``, journaled as it goes).  The journal itself is
:mod:`upclient.journal`.
"""

from .copy import CopySource, Pipe
from .items import Skipped, SourceFile
from .listing import backend_files, listed_files, read_id_list
from .lock import JobLock, Locked
from .plan import Plan, normalise_prefix, plan_sync
from .run import SyncEvent, SyncRun, SyncSummary
from .walk import walk_tree

__all__ = [
    "SyncRun",
    "SyncEvent",
    "SyncSummary",
    "SourceFile",
    "Skipped",
    "walk_tree",
    "backend_files",
    "listed_files",
    "read_id_list",
    "plan_sync",
    "normalise_prefix",
    "Plan",
    "JobLock",
    "Locked",
    "CopySource",
    "Pipe",
]
