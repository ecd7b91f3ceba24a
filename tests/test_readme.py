"""README.rst is what PyPI shows: it must be valid reStructuredText and name the two commands."""

from pathlib import Path

import docutils.core

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
