"""The files of a local tree, found with ``os.scandir`` and never opened.

Keys are paths relative to the root with ``/`` between their parts, and the
names as the file system gives them (no unicode normalisation).  A walk reads
directories and ``stat``\\ s files, nothing else: a re-run that skips every
file reads no file's content.

- Symlinks are left out unless ``follow_symlinks``; followed, a link back to
  a folder already on the way (a cycle) is left out with a warning.
- Special files (FIFOs, sockets, devices) are left out with a warning: reading
  a FIFO would block, and a device is not a file to back up.
- A name that is not valid UTF-8 cannot be a key on any server: left out with
  a warning.
- A folder that cannot be read is a failure (:class:`~.items.Skipped` with an
  error): the run goes on, and its exit status says something was missed.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Iterator, List, Tuple, Union

from .items import Skipped, SourceFile

__all__ = ["walk_tree"]

log = logging.getLogger("upclient.sync")

Found = Union[SourceFile, Skipped]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes come back as lone surrogates
        return False
    return True


def walk_tree(root: Union[str, "os.PathLike[str]"], *, follow_symlinks: bool = False) -> Iterator[Found]:
    """Every regular file under ``root``, sorted by key, and what was left out (see the module docstring)."""
    top = os.path.abspath(os.fspath(root))
    top_stat = os.stat(top)
    # (folder path, its key with a trailing "/", the (dev, inode) of the folders down to it)
    stack: List[Tuple[str, str, Tuple[Tuple[int, int], ...]]] = [
        (top, "", ((top_stat.st_dev, top_stat.st_ino),))
    ]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(prefix or "./", f"cannot read the folder: {exc.strerror or exc}", error=exc)
            continue
        subfolders = []
        for entry in entries:
            key = prefix + entry.name
            if not _utf8(entry.name):
                shown = prefix + entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                yield Skipped(shown, "its name is not valid UTF-8, so it cannot be a key")
                continue
            try:
                link = entry.is_symlink()
                if link and not follow_symlinks:
                    yield Skipped(key, "a symlink (not followed without --follow-symlinks)", warn=False)
                    continue
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                if entry.is_symlink():
                    yield Skipped(key, "a broken symlink")
                # else: removed since the folder was read; nothing to send
                continue
            except OSError as exc:
                yield Skipped(key, f"cannot stat it: {exc.strerror or exc}", error=exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                here = (st.st_dev, st.st_ino)
                if here in ancestors:
                    yield Skipped(key + "/", "a symlink back to a folder above it (a cycle)")
                    continue
                subfolders.append((entry.path, key + "/", ancestors + (here,)))
            elif stat.S_ISREG(st.st_mode):
                yield SourceFile(key=key, ref=key, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino,
                                 path=entry.path)
            else:
                yield Skipped(key, f"a special file ({_kind(st.st_mode)}), not a regular file")
        stack.extend(reversed(subfolders))  # popped in name order


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "unknown type"

