"""The house's boundaries: the import contracts hold and have teeth, and readers need no torch.

How big a function may grow is ruff's to check (C90, PLR0912, PLR0915 in pyproject.toml).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READERS = ("gpubench.report", "gpubench.gate", "gpubench.stats", "gpubench.findings", "gpubench.faq",
           "gpubench.predict", "gpubench.api", "gpubench.commands.gate",
           "gpubench.commands.report", "gpubench.commands.predict",
           "gpubench.commands.trace")  # fmt: skip

# Every module of the readers (a package's submodules too) with torch unimportable; then a
# module of the measuring side, which must fail: the block is real.
_WITHOUT_TORCH = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for name in ("torch", "torchvision"):
        sys.modules[name] = None  # "import torch" now raises ImportError
    done = []
    for name in sys.argv[1:]:
        module = importlib.import_module(name)
        done.append(name)
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
            importlib.import_module(sub.name)
            done.append(sub.name)
    assert "torch" not in {m for m, v in sys.modules.items() if v is not None}
    try:
        importlib.import_module("gpubench.train.fl")
    except ImportError as exc:
        done.append("blocked" if "import of torch halted" in str(exc) else repr(exc))
    print(" ".join(done))
    """
)


def test_every_reader_imports_with_torch_absent() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, *READERS],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = proc.stdout.split()
    assert set(READERS) <= set(imported)
    assert "gpubench.report.tables" in imported  # the walk reached a package's modules
    assert imported[-1] == "blocked"  # and the measuring side could not load


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
