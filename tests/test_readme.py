"""The README's "What it measured" table is what the committed results files say."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_readme_table_is_regenerated_from_the_committed_results():
    proc = subprocess.run([sys.executable, "scripts/readme_table.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    # 1: the tables differ from what the results files give; 2: their markers are gone
    assert proc.returncode == 0 and not proc.stderr, (
        f"README.md is stale: run python scripts/readme_table.py\n{proc.stderr}")
