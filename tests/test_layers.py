"""The house's boundaries: the import contracts hold and have teeth (readers without torch, run:
tests/test_without_torch.py).

How big a function may grow is ruff's to check (C90, PLR0912, PLR0915 in pyproject.toml).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_the_import_contracts_hold() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "breach", "contract"), [
    ("report/tables.py", "from gpubench.modes import serial", "readers never import the measuring side"),
    ("run/harness.py", "from gpubench.report import tables", "the measuring side never imports a reader"),
])  # fmt: skip
def test_an_import_across_the_two_sides_breaks_its_contract(
    tmp_path: Path, module: str, breach: str, contract: str
) -> None:
    shutil.copytree(ROOT / "gpubench", tmp_path / "gpubench",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "gpubench" / module).open("a") as f:
        f.write(f"\n\ndef _breach() -> None:\n    {breach}  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    broken = [ln for ln in proc.stdout.splitlines() if " BROKEN" in ln]
    assert any(ln.startswith(contract) for ln in broken), proc.stdout[-4000:]
