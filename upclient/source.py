"""What is uploaded: a path, bytes, a seekable file object or a stream.

A :class:`Source` knows its size (or that it is unknown), a name, a content
type, and an identity that says whether a stored resume point still belongs
to it.  Seekable sources hand out :class:`PartBody` objects that read one
byte range on demand, with ``os.pread`` where there is a file descriptor, so
many threads can read different parts at once without a shared seek pointer
and without copying a whole part into memory; a body read from a file also
names its file region, so the wire can hand it to ``os.sendfile`` and never
copy it at all.  :meth:`Source.digest` hashes a byte range the same way, one
small reused buffer per thread, for protocols that want a part's digest
before its bytes.  Non-seekable streams are read in order, one part at a
time, by :meth:`StreamSource.chunks`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import mimetypes
import os
import select
import socket
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, TypeVar, Union

from .errors import BadInput, Cancelled, SourceChanged

T = TypeVar("T")

__all__ = [
    "Source",
    "FileSource",
    "BytesSource",
    "FileObjectSource",
    "StreamSource",
    "PartBody",
    "open_source",
]

#: How much one ``read`` of a part body returns at most: large blocks keep
#: the per-call overhead of Python, urllib3 and the kernel small.
BLOCK_SIZE = 1024 * 1024

#: How much :meth:`Source.digest` reads per step into its thread's buffer:
#: small enough that the bytes are still in the CPU's cache when the hash
#: reads them, large enough that a step costs little (hashlib lets other
#: threads run while it hashes a block this size).
DIGEST_BLOCK = 256 * 1024

Bytes = Union[bytes, memoryview]
ReadAt = Callable[[int, int], Bytes]
Event = Any  # anything with is_set(), e.g. threading.Event


class PartBody:
    """A file-like, sized view of ``length`` bytes of a source from ``offset``.

    Requests sends it as a streamed body with a ``Content-Length`` (it has
    ``__len__``), in blocks of at most :data:`BLOCK_SIZE`.  Every block read
    is reported to ``on_read``; the cancel event is checked before each block,
    so a cancelled transfer stops within one block.  ``on_end`` runs once the
    last byte has been read and may raise (e.g. :class:`SourceChanged`) to
    stop the request before the final block goes out.
    """

    def __init__(
        self,
        read_at: ReadAt,
        offset: int,
        length: int,
        *,
        on_read: Optional[Callable[[int], None]] = None,
        cancel: Optional[Event] = None,
        on_end: Optional[Callable[[], None]] = None,
        file: Optional[Tuple[int, int]] = None,
    ) -> None:
        self._read_at = read_at
        self._start = offset
        self._pos = offset
        self._end = offset + length
        self._on_read = on_read
        self._cancel = cancel
        self._on_end = on_end
        self._file = file

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def zero_copy(self) -> bool:
        """Whether the bytes are a region of a file (see :meth:`next_region`)."""
        return self._file is not None

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise self._cancel.error() if hasattr(self._cancel, "error") else Cancelled("upload cancelled")

    def next_region(self, limit: int) -> Optional[Tuple[int, int, int]]:
        """The next at most ``limit`` bytes as ``(fd, file offset, count)``, for ``os.sendfile``.

        None once every byte has been sent.  The same checks as :meth:`read`:
        the cancel event first, and ``on_end`` before the region that holds
        the last byte goes out.  The sender reports what it sent with
        :meth:`sent`.
        """
        assert self._file is not None, "not a file region: use read()"
        remaining = self._end - self._pos
        if remaining <= 0:
            return None
        self._check_cancel()
        count = min(limit, remaining)
        if count == remaining and self._on_end is not None:
            self._on_end()
        fd, base = self._file
        return fd, base + self._pos, count

    def sent(self, count: int) -> None:
        """``count`` bytes of the region went out (progress)."""
        self._pos += count
        if self._on_read is not None:
            self._on_read(count)

    def short(self, count: int) -> SourceChanged:
        """The error for a file that ended ``count`` bytes early."""
        return SourceChanged(f"source ended early: {count} bytes from offset {self._pos} were missing")

    def read(self, size: int = -1) -> Bytes:
        remaining = self._end - self._pos
        if remaining <= 0:
            return b""
        self._check_cancel()
        if size is None or size < 0:
            want = min(remaining, BLOCK_SIZE)
        else:
            want = min(size, remaining)
        data = self._read_at(self._pos, want)
        if len(data) != want:
            raise SourceChanged(
                f"source ended early: wanted {want} bytes at offset {self._pos}, got {len(data)}"
            )
        self._pos += want
        if self._pos >= self._end and self._on_end is not None:
            self._on_end()
        if self._on_read is not None:
            self._on_read(want)
        return data

    def tell(self) -> int:
        return self._pos - self._start


class Source:
    """Base of all sources; see :func:`open_source` to make one."""

    name: str = "upload"
    size: Optional[int] = None
    content_type: str = "application/octet-stream"
    seekable: bool = True

    def identity(self) -> Optional[Dict[str, Any]]:
        """What must match for a stored resume point to apply; None: never resumable."""
        return None

    def read(self, offset: int, length: int) -> bytes:
        """Return exactly ``length`` bytes from ``offset`` (seekable sources)."""
        raise NotImplementedError

    def body(
        self,
        offset: int,
        length: int,
        *,
        on_read: Optional[Callable[[int], None]] = None,
        cancel: Optional[Event] = None,
    ) -> PartBody:
        """A streamed body of one byte range; the last read checks the source is unchanged."""
        return PartBody(
            self.read,
            offset,
            length,
            on_read=on_read,
            cancel=cancel,
            on_end=self.check_unchanged,
            file=self.file_region(),
        )

    def file_region(self) -> Optional[Tuple[int, int]]:
        """``(fd, offset in the file of byte 0)`` where the bytes are a regular file's, else None.

        With it, bodies go out with ``os.sendfile`` and digests are read with
        ``os.preadv``, not through :meth:`read`.
        """
        return None

    def hashes_in_place(self) -> bool:
        """Whether :meth:`digest` reads without :meth:`read` (a file's region, bytes in memory).

        Then a part is hashed where it lies and streamed after; otherwise it
        is read once, through :meth:`read`, and sent from memory.
        """
        return self.file_region() is not None

    def digest(self, offset: int, length: int, algorithm: str = "md5", *, cancel: Optional[Event] = None,
               into: Any = None) -> Any:
        """A hashlib object fed with ``length`` bytes from ``offset`` (``into``: go on with that one).

        A file is read in :data:`DIGEST_BLOCK` steps into one buffer per
        thread, so hashing a part holds no more than that; ``cancel`` is
        looked at before each step.  Raises :class:`SourceChanged` when the
        source is shorter than the range.
        """
        h = hashlib.new(algorithm) if into is None else into
        region = self.file_region()
        pos, end = offset, offset + length
        if region is not None and hasattr(os, "preadv"):
            fd, base = region
            view = _digest_buffer()
            while pos < end:
                _check(cancel)
                got = os.preadv(fd, [view[: min(DIGEST_BLOCK, end - pos)]], base + pos)
                if got <= 0:
                    raise SourceChanged(f"source ended early: {end - pos} bytes from offset {pos} were missing")
                h.update(view[:got])
                pos += got
            return h
        while pos < end:
            _check(cancel)
            block = self.read(pos, min(BLOCK_SIZE, end - pos))
            if not block:
                raise SourceChanged(f"source ended early: {end - pos} bytes from offset {pos} were missing")
            h.update(block)
            pos += len(block)
        return h

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChanged` if the source differs from when it was opened."""

    def close(self) -> None:
        """Release what the source holds (a file descriptor)."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open_path(text: str) -> Tuple[int, os.stat_result]:
    """A path opened for reading and its ``fstat``; what cannot be read is :class:`BadInput`."""
    try:
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput(f"no such file: {Path(text)}") from None
    except IsADirectoryError:
        raise BadInput(f"{Path(text)} is a directory, not a file") from None
    except PermissionError:
        raise BadInput(f"permission denied reading {Path(text)}") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise BadInput(f"{Path(text)} is a directory, not a file")
    return fd, st


_buffers = threading.local()


def _digest_buffer() -> memoryview:
    """This thread's buffer for :meth:`Source.digest` (made on first use, kept with the thread)."""
    view: Optional[memoryview] = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(DIGEST_BLOCK))
    return view


def _check(cancel: Optional[Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise cancel.error() if hasattr(cancel, "error") else Cancelled("upload cancelled")


def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class FileSource(Source):
    """A regular file on disk, read with ``os.pread`` from any thread."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        text = os.path.expanduser(os.fsdecode(path))
        fd, st = _open_path(text)
        self._adopt(text, fd, st)

    @classmethod
    def _opened(cls, text: str, fd: int, st: os.stat_result) -> "FileSource":
        """A source for a file :func:`open_source` opened already (one open, one ``fstat``)."""
        src = cls.__new__(cls)
        src._adopt(text, fd, st)
        return src

    def _adopt(self, text: str, fd: int, st: os.stat_result) -> None:
        self.path = Path(text)
        self._fd = fd
        self._stat = st
        self.size = st.st_size
        self.name = self.path.name

    @property
    def content_type(self) -> str:  # type: ignore[override]
        return _guess_type(self.name)

    def identity(self) -> Dict[str, Any]:
        st = self._stat
        return {
            "path": str(self.path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino,
        }

    if hasattr(os, "pread"):

        def read(self, offset: int, length: int) -> bytes:
            data = os.pread(self._fd, length, offset)
            while len(data) < length:  # pread may return short on some filesystems
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
            return data

    else:  # pragma: no cover - Windows: a lock around seek+read

        _lock = threading.Lock()

        def read(self, offset: int, length: int) -> bytes:
            with self._lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                return os.read(self._fd, length)

    def file_region(self) -> Optional[Tuple[int, int]]:
        if self._fd < 0 or type(self).read is not FileSource.read:
            return None  # a subclass that reads its own way is read through its read()
        return (self._fd, 0)

    def check_unchanged(self) -> None:
        st = os.fstat(self._fd)
        before = self._stat
        if (st.st_size, st.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceChanged(
                f"{self.path} changed while it was being uploaded "
                f"(size {before.st_size} -> {st.st_size}); upload again"
            )

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing useful to do
            return


class BytesSource(Source):
    """Bytes in memory; parts are zero-copy slices."""

    def __init__(self, data: Union[bytes, bytearray, memoryview], name: str = "upload") -> None:
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)
        self.name = name
        self.content_type = _guess_type(name)

    def read(self, offset: int, length: int) -> bytes:
        return self._view[offset : offset + length]  # type: ignore[return-value]

    def hashes_in_place(self) -> bool:
        return True

    def digest(self, offset: int, length: int, algorithm: str = "md5", *, cancel: Optional[Event] = None,
               into: Any = None) -> Any:
        _check(cancel)
        h = hashlib.new(algorithm) if into is None else into
        h.update(self._view[offset : offset + length])
        return h


class FileObjectSource(Source):
    """A seekable binary file object, uploaded from its current position.

    A real file (one with a working ``fileno``) is read with ``os.pread``;
    other objects (``io.BytesIO``...) through a lock around seek and read.
    """

    def __init__(self, fileobj: Any, name: Optional[str] = None) -> None:
        self._f = fileobj
        self._base = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(self._base)
        self.size = end - self._base
        raw_name = getattr(fileobj, "name", None)
        self.name = name or (os.path.basename(raw_name) if isinstance(raw_name, str) else "upload")
        self.content_type = _guess_type(self.name)
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._path: Optional[str] = None
        try:
            fd = fileobj.fileno()
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and hasattr(os, "pread"):
                self._fd = fd
                self._stat = st
                if isinstance(raw_name, str) and os.path.exists(raw_name):
                    self._path = os.path.realpath(raw_name)
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass

    def identity(self) -> Optional[Dict[str, Any]]:
        if self._fd is None or self._path is None:
            return None
        st = self._stat
        return {
            "path": self._path,
            "offset": self._base,
            "size": self.size,
            "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino,
        }

    def read(self, offset: int, length: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, length, self._base + offset)
        with self._lock:
            self._f.seek(self._base + offset)
            return self._f.read(length)

    def file_region(self) -> Optional[Tuple[int, int]]:
        if self._fd is None or type(self).read is not FileObjectSource.read:
            return None
        return (self._fd, self._base)

    def check_unchanged(self) -> None:
        if self._fd is None:
            return
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != (self._stat.st_size, self._stat.st_mtime_ns):
            raise SourceChanged(f"{self.name} changed while it was being uploaded; upload again")


class StreamSource(Source):
    """A non-seekable stream (a pipe, ``sys.stdin.buffer``, a socket file).

    Its size is unknown unless given.  It is read once, in order, one part at
    a time; each part stays in memory until the server has it, so a failed
    part can be sent again.  A stream cannot be resumed by another process.

    Read under a call's signal (:meth:`chunks` with ``stop``), a stream that
    stops giving bytes holds the call no longer than its deadline, cancel or
    the client's close allow.  A pipe, FIFO or terminal (an unbuffered
    socket too) is waited for with ``poll`` in the calling thread, between
    reads that take only what has arrived.  A stream whose ``read(size,
    stop)`` takes the signal itself says so with a true ``read_takes_stop``
    attribute (upclient's own pipes do).  Any other stream (a WSGI body, an
    iterator's reader) is read in a thread of its own, which is left blocked
    if the signal fires first: the stream is then given up on.
    """

    seekable = False

    def __init__(self, stream: Any, name: str = "upload", size: Optional[int] = None) -> None:
        self._stream = stream
        self.name = name
        self.content_type = _guess_type(name)
        self.size = size
        self._fd = _pollable_fd(stream)
        self._takes_stop = bool(getattr(stream, "read_takes_stop", False))
        self._given_up = False  # a read was left blocked in its thread: the stream is no longer ours

    def _call(self, stop: Any, read: Callable[..., T], *args: Any) -> T:
        """``read(*args, stop)``, where a stalled stream cannot hold it past ``stop`` (a
        :class:`~upclient.transfer.StopSignal`; None: a plain blocking read)."""
        if stop is None or self._fd is not None or self._takes_stop:  # no thread needed
            return read(*args, stop)
        if self._given_up:
            raise Cancelled(f"an earlier read of {self.name} was given up")
        try:
            return stop.wait_for(read, *args, None)  # type: ignore[no-any-return]
        except Cancelled:
            self._given_up = True
            raise

    def _read_full(self, n: int, head: Bytes = b"", stop: Any = None) -> memoryview:
        """``head`` and then bytes of the stream, ``n`` in all (fewer only at its end).

        They are read into one buffer of ``n`` bytes, which the part then
        holds: a part is never copied whole while it is read.  With ``stop``
        (a pollable stream only), each read waits in ticks for bytes to come
        and takes what has come.
        """
        buf = bytearray(n)
        view = memoryview(buf)
        got = len(head)
        view[:got] = head
        if stop is not None and self._fd is not None:
            fill = getattr(self._stream, "readinto1", None) or self._stream.readinto  # never waits for more
            while got < n:
                stop.wait_readable(self._fd)
                count = fill(view[got:])
                if not count:
                    break
                got += count
        else:
            take = self._stream.read
            if stop is not None and self._takes_stop:
                take = functools.partial(take, stop=stop)
            while got < n:
                block = take(n - got)
                if not block:
                    break
                block = block[: n - got]
                view[got : got + len(block)] = block
                got += len(block)
        view.release()
        if got < n:
            del buf[got:]
        return memoryview(buf)

    def chunks(self, part_size: int, stop: Any = None) -> Iterator[Tuple[int, Bytes, bool]]:
        """Yield ``(offset, data, is_last)``.

        With a known size, never read past it (a request body on a kept-alive
        socket has no end of file to find); without one, read one byte
        ahead to know which part is the last, so that only the part being
        sent is held.  ``stop``: see the class docstring.
        """
        if self.size is not None:
            yield from self._sized_chunks(part_size, self.size, stop)
            return
        offset = 0
        head: Bytes = b""
        while True:
            current, head = self._call(stop, self._part_and_next, part_size, head)
            last = not head
            yield offset, current, last
            if last:
                total = offset + len(current)
                if self.size is not None and total != self.size:
                    raise SourceChanged(f"stream gave {total} bytes, {self.size} were announced")
                self.size = total
                return
            offset += len(current)

    def _part_and_next(self, part_size: int, head: Bytes, stop: Any) -> Tuple[memoryview, Bytes]:
        """A part (``head`` first) and the byte after it, if the stream has one."""
        current = self._read_full(part_size, head, stop)
        return current, (self._read_full(1, b"", stop) if len(current) == part_size else b"")

    def _has_more(self, stop: Any) -> bool:
        """Whether the stream goes on past the announced size.

        Pipes, files and stream objects are asked for one more byte (they
        answer at their end).  A socket is only peeked at without waiting:
        a kept-alive connection has no end to find, and its next bytes may
        be another request.
        """
        fileno = getattr(self._stream, "fileno", None)
        if fileno is not None:
            try:
                mode = os.fstat(fileno()).st_mode
            except (OSError, ValueError, io.UnsupportedOperation):
                mode = None
            if mode is not None and stat.S_ISSOCK(mode):
                return False  # see the docstring: never read a request past its body
        try:
            return bool(self._read_full(1, b"", stop))
        except (OSError, ValueError):
            return False

    def _sized_chunks(self, part_size: int, size: int, stop: Any) -> Iterator[Tuple[int, Bytes, bool]]:
        offset = 0
        while True:
            want = min(part_size, size - offset)
            last = offset + want >= size
            data, more = self._call(stop, self._sized_part, want, last)
            if len(data) < want:
                raise SourceChanged(f"stream ended after {offset + len(data)} bytes, {size} were announced")
            if more:  # before the last part goes: the server never holds a cut file
                raise SourceChanged(f"stream is longer than the {size} bytes announced; nothing was finished")
            yield offset, data, last
            if last:
                return
            offset += want

    def _sized_part(self, want: int, last: bool, stop: Any) -> Tuple[memoryview, bool]:
        """``want`` bytes of the stream and, after the last part, whether it goes on."""
        data = self._read_full(want, b"", stop)
        return data, bool(last and len(data) == want and self._has_more(stop))


def _pollable_fd(stream: Any) -> Optional[int]:
    """The descriptor of a stream that ``poll`` can wait on and whose reads take only what has
    come: an unbuffered pipe, FIFO, terminal or socket, or a buffered reader of a pipe, FIFO or
    terminal (``sys.stdin.buffer``).  Not a buffered socket reader: an HTTP server read the
    request's head through it, and the start of the body waits in its buffer, where ``poll``
    cannot see it.  Nor one that decodes or decompresses, whose reads may want more than
    the descriptor has.
    """
    if not hasattr(select, "poll"):  # Windows: such streams are read in a thread
        return None
    if isinstance(stream, io.BufferedReader):
        # read with readinto1, which leaves the buffer empty; bytes that someone else's
        # read() left in it are taken once poll() sees more, or the end, come
        if not isinstance(stream.raw, io.FileIO):
            return None
    elif not isinstance(stream, (io.FileIO, socket.SocketIO)):
        return None
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) else None


def _sized(src: Source, size: Optional[int]) -> Source:
    """A seekable source whose real size differs from ``size=`` is refused, not cut or ignored."""
    if size is not None and src.size != size:
        src.close()
        raise BadInput(f"size={size} was given, but {src.name} holds {src.size} bytes")
    return src


def open_source(
    obj: Any,
    *,
    name: Optional[str] = None,
    size: Optional[int] = None,
) -> Source:
    """Make a :class:`Source` for a path, bytes, a file object or a stream.

    Raises :class:`BadInput` for things that cannot be uploaded: a missing
    file, a directory, a text-mode file, a negative size.
    """
    if isinstance(obj, Source):
        return obj
    if size is not None and (not isinstance(size, int) or size < 0):
        raise BadInput(f"size must be a non-negative integer, not {size!r}")
    if isinstance(obj, (str, os.PathLike)):
        text = os.path.expanduser(os.fsdecode(obj))
        fd, st = _open_path(text)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device: read it as a stream
            return StreamSource(os.fdopen(fd, "rb"), name=name or Path(text).name, size=size)
        src = FileSource._opened(text, fd, st)
        if name:
            src.name = name
        return _sized(src, size)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _sized(BytesSource(obj, name=name or "upload"), size)
    if hasattr(obj, "read"):
        if isinstance(obj, io.TextIOBase):
            raise BadInput("file objects must be opened in binary mode ('rb')")
        seekable = False
        try:
            seekable = bool(obj.seekable())
        except (AttributeError, ValueError, OSError):
            seekable = False
        if seekable:
            return _sized(FileObjectSource(obj, name=name), size)
        raw_name = getattr(obj, "name", None)
        default = "upload"
        if isinstance(raw_name, str) and not raw_name.startswith("<"):
            default = os.path.basename(raw_name)
        return StreamSource(obj, name=name or default, size=size)
    raise BadInput(
        f"cannot upload a {type(obj).__name__}: give a path, bytes, or a binary file object"
    )
