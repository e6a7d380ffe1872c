"""Child processes for the tests of crashes, locks and concurrent access."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path


def child(code: str, tmp_path: Path, name: str = "child.py") -> subprocess.Popen:
    """Run ``code`` (dedented) as a Python script in its own process, output captured."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(marker: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until ``process`` creates ``marker``; fail with its output if it dies first."""
    deadline = time.time() + seconds
    while not marker.exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.time() < deadline, "child did not reach the marker"
        time.sleep(0.02)
