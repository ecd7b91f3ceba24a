"""The library prints nothing unless the app configures logging."""

from __future__ import annotations

import subprocess
import sys

import upclient
from upclient.testing import CommunityServer

SCRIPT = """
import logging, sys
import upclient
{configure}
with upclient.Client("community+" + sys.argv[1], token="t", store=None,
                     retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
    print(client.put(sys.argv[2].encode() * 500, key="a.bin").size)
"""


def run(url: str, fill: str, configure: str = "") -> subprocess.CompletedProcess:
    """One put of 1000 bytes of ``fill`` (distinct, so the server does not deduplicate it)."""
    return subprocess.run([sys.executable, "-c", SCRIPT.format(configure=configure), url, fill],
                          capture_output=True, text=True, timeout=60)


def test_the_upclient_logger_has_a_null_handler():
    import logging

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("upclient").handlers)
    assert upclient.__version__


def test_nothing_reaches_stderr_unless_the_app_configures_logging():
    with CommunityServer(tokens={"t"}) as server:
        server.fail_request("complete", 503)  # retried: the retry logs a WARNING
        quiet = run(server.url, "ab")
        server.fail_request("complete", 503)
        loud = run(server.url, "cd", "logging.basicConfig(level=logging.WARNING)")
    assert quiet.returncode == 0 and quiet.stdout.strip() == "1000", quiet.stderr
    assert quiet.stderr == ""
    assert loud.returncode == 0, loud.stderr
    assert "WARNING:upclient" in loud.stderr


def test_the_command_run_in_process_gives_the_loggers_back_as_it_found_them(tmp_path):
    """upclient.cli.main() called by an app (or a test) must not leave its logging set up behind it."""
    import logging

    from upclient.cli import main

    names = ("upclient", "urllib3")
    before = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
              for n in names}
    missing = tmp_path / "missing.bin"
    assert main(["put", str(missing), "--to", "tus+http://127.0.0.1:9/files/", "-vvv", "--no-resume"]) != 0
    after = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
             for n in names}
    assert after == before
