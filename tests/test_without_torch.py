"""What must work on a machine without torch (a CI job reading results, a laptop making a
report): one fresh interpreter in which ``import torch`` fails imports those modules and uses
them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"

_PROBE = textwrap.dedent(f"""
    import json, sys
    import gpubench.predict, gpubench.commands.predict
    predict_loads_torch = "torch" in sys.modules  # not even tried
    sys.modules["torch"] = None  # import torch -> ImportError
    import gpubench.cases, gpubench.cases.seeds
    import gpubench.findings, gpubench.report.findings, gpubench.report.doctor
    import gpubench.report.page
    from gpubench.results import read_results

    r = read_results({str(FIXTURES / 'findings_2slots.json')!r})
    print(json.dumps({{
        "case": gpubench.cases.Case.__name__,
        "findings": gpubench.report.findings.format_findings(
            gpubench.findings.compute_findings(r)),
        "predict_loads_torch": predict_loads_torch,
    }}))
""")


def test_cases_seeds_findings_reports_and_predict_import_and_work_without_torch():
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["case"] == "Case"
    assert "[threads-slower]" in out["findings"]
    assert out["predict_loads_torch"] is False
