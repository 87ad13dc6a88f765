"""pyflakes over the code (through ruff): a name that does not exist fails here, not in CI's last test."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_undefined_names_or_unused_imports() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "sandbox", "bench", "tests"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
