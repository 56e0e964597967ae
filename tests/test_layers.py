"""The house's boundaries: readers work without torch, and the import contracts have teeth."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READERS = ("gpubench.report", "gpubench.gate", "gpubench.stats", "gpubench.findings", "gpubench.faq",
           "gpubench.predict")

# Every module of the readers (a package's submodules too), with torch unimportable.
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
    print(" ".join(done))
    """
)


def test_report_gate_stats_and_findings_import_with_torch_absent() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, *READERS],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = proc.stdout.split()
    assert set(READERS) <= set(imported)
    assert "gpubench.report.tables" in imported  # the walk reached a package's modules


def test_the_torch_block_is_real() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, "gpubench.train.fl"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode != 0 and "import of torch halted" in proc.stderr


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


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("stats.py", "import torch", "readers need no torch"),
        ("config.py", "from gpubench.run import harness", "gpubench is layered"),
        ("modes/base.py", "from gpubench.modes import serial", "no import cycle"),
        ("run/doctor.py", "import pynvml", "only gpubench.monitor.nvml imports pynvml"),
        ("new_room.py", "", "gpubench is layered"),  # a module outside every layer
    ],
)
def test_each_contract_catches_its_breach(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(ROOT / "gpubench", tmp_path / "gpubench",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "gpubench" / module
    with target.open("a") as f:
        f.write(f"\n{line}  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    broken = [ln for ln in proc.stdout.splitlines() if " BROKEN" in ln]
    assert any(ln.startswith(contract) for ln in broken), proc.stdout[-4000:]


def test_no_module_of_the_package_is_over_450_lines():
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "gpubench"
    long = {str(p.relative_to(package)): n for p in package.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, f"split these modules (a module over ~450 lines is two): {long}"
