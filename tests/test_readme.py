"""README.rst is what PyPI shows: it must be valid reStructuredText and name the two commands."""

import hashlib
import os
from pathlib import Path

import docutils.core
import pytest

README = Path(__file__).resolve().parent.parent / "README.rst"


def test_readme_is_valid_restructuredtext():
    docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"),
        settings_overrides={"report_level": 2, "halt_level": 2, "warning_stream": False},
    )


def test_readme_starts_with_the_two_commands():
    head = README.read_text(encoding="utf-8")[:1500]
    assert "make demo" in head and "make test" in head


def test_the_fastdfs_example_runs_against_the_emulator(tmp_path, monkeypatch):
    """The README's FastDFS block runs as it is (against the emulator it starts)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\nFastDFS\n-------\n", 1)[1]
    lines = []
    for line in section.split(".. code-block:: python\n\n", 1)[1].splitlines():
        if line and not line.startswith("   "):
            break  # the block ends at the first line that is not indented
        lines.append(line[3:])
    code = "\n".join(lines)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.rst (FastDFS)", "exec"), {})
    assert (tmp_path / "copy.jpg").read_bytes() == (tmp_path / "photo.jpg").read_bytes()


def _python_block(section: str) -> str:
    """The first Python code block of ``section``, dedented."""
    lines = []
    for line in section.split(".. code-block:: python\n\n", 1)[1].splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    return "\n".join(lines)


def test_the_quick_start_runs_as_it_stands(tmp_path, monkeypatch, capsys):
    """The Quick start, pasted, against the tus server its console block starts (on another port here)."""
    from upclient.testing import ResumableUploadServer

    text = README.read_text(encoding="utf-8")
    section = text.split("\nQuick start\n-----------\n", 1)[1].split("\n------", 1)[0]
    assert "$ python -m upclient.testing tus" in section
    code = _python_block(section)
    assert "tus+http://127.0.0.1:1080/files/" in code
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with ResumableUploadServer(tmp_path / "server") as server:
        exec(compile(code.replace("tus+http://127.0.0.1:1080/files/", "tus+" + server.url),
                     "README.rst (Quick start)", "exec"), {})
    assert (work / "copy.tar.gz").read_bytes() == (work / "backup.tar.gz").read_bytes()
    out = capsys.readouterr().out
    assert "missing.bin" in out and "100%" in out


def test_the_store_of_your_own_resumes_an_upload(tmp_path, monkeypatch):
    """README's SqliteStore, as it is there, keeps a resume point that a second client resumes from."""
    import threading

    import upclient
    from upclient import errors
    from upclient.testing import ResumableUploadServer

    from .contract import HookedFileSource

    text = README.read_text(encoding="utf-8")
    code = _python_block(text.split("\nYour own store\n", 1)[1])
    assert 'store=SqliteStore("resume.sqlite3")' in code
    monkeypatch.chdir(tmp_path)
    with ResumableUploadServer(tmp_path / "server") as server:
        namespace: dict = {}
        exec(compile(code.replace("tus+http://127.0.0.1:1080/files/", "tus+" + server.url),
                     "README.rst (Your own store)", "exec"), namespace)
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(6 * 1024 * 1024))
        cancel = threading.Event()

        def hook(offset: int) -> None:
            if offset >= 2 * 1024 * 1024:
                cancel.set()

        settings = dict(part_size=1024 * 1024, concurrency=1, concat=False)
        with upclient.Client("tus+" + server.url, store=namespace["SqliteStore"]("resume.sqlite3"), **settings) as c:
            with HookedFileSource(path, hook) as source, pytest.raises(errors.Cancelled):
                c.put(source, cancel=cancel)
        namespace["client"].close()
        with upclient.Client("tus+" + server.url, store=namespace["SqliteStore"]("resume.sqlite3"), **settings) as c:
            result = c.put(path)
        assert result.resumed and server.stored_sha256(result.id) == hashlib.sha256(path.read_bytes()).hexdigest()
