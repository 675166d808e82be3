"""The package's layering (import-linter contracts in pyproject.toml): imports only point down, no cycles."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    command = [str(lint) if lint.exists() else shutil.which("lint-imports"), "--no-cache", "--config",
               str(PROJECT_ROOT / "pyproject.toml")]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
