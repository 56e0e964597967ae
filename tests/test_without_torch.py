"""The one check that gpubench's readers work where torch is absent (a CI job reading results, a
laptop making a report): one fresh interpreter in which ``import torch`` fails imports every
module of the readers and the public API, runs ``gpubench --help``, ``report`` and ``faq --from``
and computes findings; the measuring side, which needs torch, cannot load there. (The import
contract ``readers-without-torch`` in pyproject.toml checks the readers' imports statically.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
READERS = ("gpubench.report", "gpubench.gate", "gpubench.stats", "gpubench.findings",
           "gpubench.faq", "gpubench.history", "gpubench.predict", "gpubench.api",
           "gpubench.commands.gate", "gpubench.commands.report", "gpubench.commands.predict",
           "gpubench.commands.faq", "gpubench.commands.history",
           "gpubench.commands.trace")  # fmt: skip
# The Case contract and the seeds, without the catalogue (whose cases are torch models).
ALONE = ("gpubench.cases", "gpubench.cases.seeds")

_PROBE = textwrap.dedent("""
    import contextlib, importlib, io, json, pkgutil, sys

    tried = []

    class Block:  # "import torch" (torchvision too) raises ImportError, and is noted
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                tried.append(name)
                raise ImportError(f"import of {name} blocked")

    sys.meta_path.insert(0, Block())
    for name in ("torch", "torchvision"):
        sys.modules.pop(name, None)
    args = json.loads(sys.argv[1])
    out = {}

    import gpubench  # the public API: its errors and records, no torch
    try:
        gpubench.TrainConfig(samples="lots")
    except gpubench.ConfigError as exc:
        out["config_error"] = "samples" in str(exc)

    done = []
    for name in args["modules"]:
        module = importlib.import_module(name)
        done.append(name)
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
            importlib.import_module(sub.name)
            done.append(sub.name)
    for name in args["alone"]:
        importlib.import_module(name)
        done.append(name)
    out["imported"] = done
    out["tried_on_import"] = sorted(set(tried))

    from gpubench.cli import main
    from gpubench.findings import compute_findings
    from gpubench.report.findings import format_findings
    from gpubench.results import read_results

    out["findings"] = format_findings(compute_findings(read_results(args["findings"])))
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main(["--help"])
        except SystemExit as exc:
            out["help"] = [exc.code, "compare" in text.getvalue()]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out["report"] = main(["report", args["report"], "-o", args["out"] + "/report.md"])
        out["faq"] = main(["faq", "--out", args["out"] + "/faq", "--from", *args["faq"]])
    out["torch_loaded"] = [m for m, v in sys.modules.items()
                           if m.split(".")[0] in ("torch", "torchvision") and v is not None]
    try:
        importlib.import_module("gpubench.train.fl")
        out["measuring_side"] = "loaded"
    except ImportError as exc:
        out["measuring_side"] = "blocked" if "blocked" in str(exc) else repr(exc)
    print(json.dumps(out))
""")


def test_the_readers_and_the_cli_work_with_torch_absent(tmp_path: Path) -> None:
    args = {"modules": READERS, "alone": ALONE, "findings": str(FIXTURES / "findings_2slots.json"),
            "report": str(FIXTURES / "report_nomonitor.json"), "out": str(tmp_path),
            "faq": [str(ROOT / "reports" / "gpu-h200" / "compare-one-gpu.json")]}
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["config_error"] is True
    assert set(READERS) | set(ALONE) <= set(out["imported"])
    assert "gpubench.report.tables" in out["imported"]  # the walk reached a package's modules
    assert out["tried_on_import"] == []  # not even tried: no reader falls back on its absence
    assert "[threads-slower]" in out["findings"]
    assert out["help"] == [0, True]
    assert (out["report"], out["faq"]) == (0, 0)
    assert "## " in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## " in (tmp_path / "faq" / "faq.en.md").read_text(encoding="utf-8")
    assert out["torch_loaded"] == []
    assert out["measuring_side"] == "blocked"  # the block is real
