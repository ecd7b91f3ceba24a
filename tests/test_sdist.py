"""The sdist carries every file the repository tracks, so `make test` runs in its unpacked tree."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Tracked files an sdist has no use for.
NOT_SHIPPED = {".gitignore", "bench/bench.png"}  # the plot make bench draws


def tracked() -> set:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an unpacked sdist, say): nothing to compare with")
    return {line for line in out.splitlines() if line and line not in NOT_SHIPPED}


@pytest.mark.timeout(300)
def test_the_sdist_holds_every_tracked_file(tmp_path):
    files = tracked()
    if not files:
        pytest.skip("git tracks nothing here")
    build = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True, timeout=280)
    assert build.returncode == 0, build.stderr[-2000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        shipped = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = sorted(files - shipped)
    assert not missing, f"tracked but not in the sdist (MANIFEST.in): {missing}"
