"""The code keeps its shape: ruff clean, and the dependency direction holds.

The layers (pyproject.toml, import-linter): the ``sealgate`` command on top, then
``portal`` and ``relay``, then ``keydir``, then the pure S/MIME engine ``smime``, which
touches no database, network, web framework or clock.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(tool)
    assert executable, f"{tool} is not installed: pip install -e '.[test]'"
    return subprocess.run([executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept():
    result = _run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
