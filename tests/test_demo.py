"""make demo runs the main job end to end: it must keep working."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_demo_uploads_resumes_verifies_and_deduplicates():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "upclient.demo", "--size", "12M", "--part-size", "1M"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "resumed        yes" in out
    assert "identical: the server holds exactly the source's bytes" in out
    assert "deduplicated, the server already had it" in out
