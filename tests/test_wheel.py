"""What ``pip install 'upclient[testing]'`` gives a user, checked from a built wheel.

The wheel is built from a copy of this tree and installed, with pytest and
nothing else, into a fresh virtualenv; every command below runs with that
virtualenv's interpreter, outside this tree, with no ``PYTHONPATH`` and no
setting that points at the checkout's npm packages. One virtualenv serves
the whole module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

import upclient

from .conftest import KiB, SERVING, parse_announcement, stop_process
from .test_plugin import USER_TESTS

# Building the wheel and filling a virtualenv take tens of seconds, within the first test's time.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[1]

#: What the copy of the tree leaves out: what a build does not read, and what could go stale in it.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "node_modules", "__pycache__",
    ".pytest_cache", ".mypy_cache", ".ruff_cache",
)  # fmt: skip

#: Settings of this environment a user's would not have.
NOT_INHERITED = ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "UPCLIENT_TUS_NODE_MODULES", "UPCLIENT_TUS_NODE_DIR",
                 "NODE_PATH", "UPCLIENT_TUS_SERVER", "UPCLIENT_URL")


class Installed(NamedTuple):
    wheel: Path
    python: Path
    root: Path

    def env(self, cache: Path, **extra: str) -> Dict[str, str]:
        """The user's environment: this one less what points here, with its own user cache."""
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        return {**env, "XDG_CACHE_HOME": str(cache), **extra}

    def run(self, args: List[str], cwd: Path, env: Dict[str, str], timeout: float = 300
            ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([str(self.python), *args], cwd=str(cwd), env=env, capture_output=True, text=True,
                              timeout=timeout)


def _check(args: List[str], **kwargs) -> None:
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert run.returncode == 0, f"{args}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, root / "src", ignore=NOT_COPIED)
    _check([sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(root / "src")])
    [wheel] = (root / "dist").glob("upclient-*.whl")
    _check([sys.executable, "-m", "venv", str(root / "venv")])
    python = root / "venv" / "bin" / "python"
    _check([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[testing]", "pytest"], cwd=str(root))
    return Installed(wheel, python, root)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def test_the_wheel_carries_the_node_script_and_the_plugins_entry_point(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "upclient/testing/servers/tus-node-server.mjs" in names
    assert "upclient/testing/plugin.py" in names and "upclient/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert "[pytest11]\nupclient.testing.plugin = upclient.testing.plugin" in entry_points


def test_pytest_runs_the_readme_example_with_only_the_wheel(installed: Installed, user_dir: Path, tmp_path) -> None:
    """No node packages here: the tus fixture is the Python server; the entry point loaded the plugin."""
    (user_dir / "test_uploads.py").write_text(USER_TESTS)
    env = installed.env(tmp_path / "cache")
    where = installed.run(["-c", "import upclient; print(upclient.__file__)"], user_dir, env)
    assert where.stdout.startswith(str(installed.root / "venv")), where

    run = installed.run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], user_dir, env)
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout + run.stderr

    without = installed.run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:upclient.testing.plugin"],
                            user_dir, env)
    assert without.returncode == 1 and "fixture 'upclient_tus_server' not found" in without.stdout


@contextlib.contextmanager
def _serve_tus(installed: Installed, directory: Path, env: Dict[str, str]) -> Iterator[Dict[str, str]]:
    """``python -m upclient.testing tus`` from the virtualenv: yields what it printed, then stops it with Ctrl-C."""
    command = [str(installed.python), "-m", "upclient.testing", "tus", "--port", "0", "--dir", str(directory)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=str(directory.parent)) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            lines: List[str] = []
            while not lines or lines[-1] != SERVING:
                line = proc.stdout.readline()
                assert line, f"{lines}; stderr: {proc.stderr.read()}"
                lines.append(line.strip())
            printed = parse_announcement(lines)
            if "resumable-upload" in printed["server"]:
                printed["note"] = proc.stderr.readline()
            yield printed
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            stop_process(proc)  # Ctrl-C, so its server process goes too


def _put_and_check(url: str, directory: Path, size: int) -> None:
    data = os.urandom(size)
    with upclient.Client(url, store=None) as client:
        result = client.put(data)
    stored = directory / result.id.rsplit("/", 1)[1]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_tus_command_from_the_wheel_serves_a_client(installed: Installed, tmp_path) -> None:
    served = tmp_path / "served"
    with _serve_tus(installed, served, installed.env(tmp_path / "cache")) as printed:
        assert printed["url"].startswith("tus+http://127.0.0.1:") and printed["url"].endswith("/files/")
        assert printed["server"].startswith("resumable-upload")
        assert "npm install --prefix" in printed["note"] and str(tmp_path / "cache") in printed["note"]
        _put_and_check(printed["url"], served, 300 * KiB + 7)


def test_the_demo_runs_from_the_wheel(installed: Installed, user_dir: Path, tmp_path) -> None:
    run = installed.run(["-m", "upclient.demo"], user_dir, installed.env(tmp_path / "cache"), timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_the_npm_command_the_message_names_brings_in_the_node_server(installed: Installed, user_dir, tmp_path) -> None:
    """Run the ``npm install`` the missing-package message names: then the command and the fixture use node."""
    from upclient.testing import TusNodeServer

    reason = TusNodeServer.unavailable_reason()
    if reason or shutil.which("npm") is None:
        pytest.skip(reason or "npm is not installed")
    env = installed.env(tmp_path / "cache")
    named = installed.run(
        ["-c", "from upclient.testing.servers.nodepackages import install_command; print(install_command())"],
        user_dir, env,
    )  # fmt: skip
    command = named.stdout.strip()
    assert command.startswith(f"npm install --prefix {tmp_path / 'cache'}"), named
    _check(shlex.split(command) + ["--no-audit", "--no-fund", "--loglevel=error"], env=env)

    served = tmp_path / "served"
    with _serve_tus(installed, served, env) as printed:
        assert printed["server"] == "@tus/server (Node.js)"
        _put_and_check(printed["url"], served, 200 * KiB + 1)

    (user_dir / "test_uploads.py").write_text(USER_TESTS)
    (user_dir / "test_kind.py").write_text("def test_kind(upclient_tus_server):\n"
                                           "    assert upclient_tus_server.kind == 'node'\n")
    # pytest_plugins naming the plugin as well as its entry point: still registered once
    (user_dir / "conftest.py").write_text('pytest_plugins = ["upclient.testing.plugin"]\n')
    run = installed.run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], user_dir, env)
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout + run.stderr
