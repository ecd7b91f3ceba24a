"""What a sync does with each file: upload it, skip it, ask the server first, or delete a remote one.

:func:`plan_sync` is pure: it compares the source's files with the journal
and with what one listing of the destination showed (:class:`~.listing.Holdings`),
and decides, without any I/O:

- a file the journal finished, unchanged since (size, mtime, inode, and MD5
  where both know it), is skipped when the listing shows the server still
  holds it with that size (and MD5, where the listing gives one); when the
  destination cannot list, it is kept for a ``check`` (``info`` of its id);
- a file the journal does not know, or that changed, is uploaded; one it
  does not know, on a keyed destination that already holds its key with the
  same size, is first ``checked`` (MD5 on both sides), so a tree uploaded by
  other means (or by a run killed before it could journal the file) is not
  sent again;
- with ``delete``: a remote file under the prefix that no source file names
  (keyed destinations), or one the journal uploaded from a source file that
  is gone (destinations that list ids), is deleted.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..journal import JournalEntry
from ..result import FileInfo
from .items import SourceFile
from .listing import Holdings, info_md5

__all__ = ["Upload", "Skip", "Check", "Delete", "Plan", "plan_sync", "destination_key", "normalise_prefix"]


@dataclasses.dataclass(frozen=True)
class Upload:
    file: SourceFile
    key: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Skip:
    file: SourceFile
    key: str
    id: str
    size: Optional[int]
    reason: str


@dataclasses.dataclass(frozen=True)
class Check:
    """A file to ask the server about before deciding.

    ``entry`` set: the journal finished it; skip it if ``info(entry.id)``
    still shows it.  ``entry`` None: the destination holds its key with the
    same size (``remote``); skip it (and journal it) if the MD5s agree.
    """

    file: SourceFile
    key: str
    entry: Optional[JournalEntry] = None
    remote: Optional[FileInfo] = None


@dataclasses.dataclass(frozen=True)
class Delete:
    key: str
    id: str
    size: Optional[int]
    entry: Optional[JournalEntry] = None


@dataclasses.dataclass
class Plan:
    uploads: List[Upload] = dataclasses.field(default_factory=list)
    skips: List[Skip] = dataclasses.field(default_factory=list)
    checks: List[Check] = dataclasses.field(default_factory=list)
    deletes: List[Delete] = dataclasses.field(default_factory=list)

    @property
    def upload_bytes(self) -> int:
        return sum(u.file.size or 0 for u in self.uploads)


def normalise_prefix(prefix: Optional[str]) -> str:
    """``backup/2026`` -> ``backup/2026/``; ``""`` and None -> ``""``; no leading ``/``."""
    p = (prefix or "").lstrip("/")
    return p if not p or p.endswith("/") else p + "/"


def destination_key(prefix: str, file: SourceFile) -> str:
    return prefix + file.key


def _unchanged(entry: JournalEntry, file: SourceFile) -> bool:
    if not entry.same_source(file.size, file.mtime_ns, file.inode):
        return False
    return not (file.md5 and entry.md5 and file.md5.lower() != entry.md5.lower())


def held(info: Optional[FileInfo], size: Optional[int], md5: Optional[str]) -> bool:
    """Whether a listed or looked-up file is a finished one of this size (and MD5, where both are known)."""
    if info is None or not info.complete or info.size != size:
        return False
    theirs = info_md5(info)
    return not (theirs and md5 and theirs != md5.lower())


def plan_sync(
    files: Iterable[SourceFile],
    journal: Dict[Tuple[str, str], JournalEntry],
    holdings: Holdings,
    *,
    prefix: str = "",
    check_server: bool = True,
    delete: bool = False,
) -> Plan:
    """Decide for each file (see the module docstring)."""
    plan = Plan()
    wanted: Set[str] = set()
    refs: Set[str] = set()
    for f in files:
        key = destination_key(prefix, f)
        wanted.add(key)
        refs.add(f.ref)
        entry = journal.get((f.ref, key))
        if entry is not None and _unchanged(entry, f):
            if not check_server:
                plan.skips.append(Skip(f, key, entry.id, entry.size, "unchanged"))
            elif holdings.by_key is not None or holdings.by_id is not None:
                listed = (holdings.by_key.get(key) if holdings.by_key is not None
                          else holdings.by_id.get(entry.id) if holdings.by_id is not None else None)
                if held(listed, entry.size, entry.md5):
                    plan.skips.append(Skip(f, key, entry.id, entry.size, "unchanged"))
                else:
                    why = "gone from the server" if listed is None else "different on the server"
                    plan.uploads.append(Upload(f, key, why))
            else:
                plan.checks.append(Check(f, key, entry=entry))
            continue
        reason = "new" if entry is None else "changed"
        remote = holdings.by_key.get(key) if holdings.by_key is not None else None
        if entry is None and remote is not None and remote.complete and remote.size == f.size:
            plan.checks.append(Check(f, key, remote=remote))
        else:
            plan.uploads.append(Upload(f, key, reason))
    if delete:
        if holdings.by_key is not None:
            by_destination = {e.destination: e for e in journal.values()}
            for key, info in sorted(holdings.by_key.items()):
                if key.startswith(prefix) and key not in wanted:
                    plan.deletes.append(Delete(key, info.id, info.size, by_destination.get(key)))
        elif holdings.by_id is not None:
            for entry in sorted(journal.values(), key=lambda e: e.destination):
                if entry.path not in refs and entry.id in holdings.by_id:
                    plan.deletes.append(Delete(entry.destination, entry.id, entry.size, entry))
    return plan
