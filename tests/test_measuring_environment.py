"""The library and the command line measure under the same environment and record it: the
OpenMP wait that ``gpubench compare`` bounds first thing is bounded by ``gpubench.compare``
too, before torch loads OpenMP, and ``results.environment`` says so alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

BOUNDED = "GOMP_SPINCOUNT=30000"
TINY = dict(case="mlp", clients=2, samples=32, batch_size=16, rounds=1, warmup=0,
            devices="cpu:1", modes="serial")  # fmt: skip
TINY_ARGV = ["--case", "mlp", "--clients", "2", "--samples-per-client", "32", "--batch-size",
             "16", "--rounds", "1", "--warmup", "0", "--devices", "cpu:1", "--modes", "serial",
             "--sample-interval", "0", "--counterfactual", "off", "--quiet"]


def fresh_environment() -> dict[str, str]:
    """This process's environment without an OpenMP wait of the user's (the bound applies
    only where neither variable is set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    return {**env, "PYTHONPATH": str(ROOT)}


def python(code: str, cwd: os.PathLike[str] | str = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=240, cwd=cwd, env=fresh_environment())


def test_the_library_bounds_openmps_wait_before_torch_loads():
    proc = python("""
        import os, sys
        import gpubench
        from gpubench.config import ConfigError

        class Watch:  # what GOMP_SPINCOUNT is when torch (and its OpenMP) first loads
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    print("torch loads with", os.environ.get("GOMP_SPINCOUNT"))
                    sys.meta_path.remove(self)

        sys.meta_path.insert(0, Watch())
        try:
            gpubench.compare(gpubench.RunConfig(case="mlp", clients=0))
        except ConfigError:
            pass
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "torch loads with 30000"


@pytest.mark.slow
def test_a_library_run_and_a_command_line_run_record_the_same_openmp_wait(tmp_path):
    api_out, cli_out = tmp_path / "api.json", tmp_path / "cli.json"
    proc = python(f"""
        import gpubench
        from gpubench.config import RunConfig, TrainConfig
        t = {TINY!r}
        train = TrainConfig(samples=t.pop("samples"), batch_size=t.pop("batch_size"))
        config = RunConfig(**t, train=train, sample_interval_s=None)
        gpubench.compare(config, counterfactual=False).save({str(api_out)!r})
    """, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "gpubench", "compare", *TINY_ARGV,
                          "--out", str(cli_out)], capture_output=True, text=True, timeout=240,
                         cwd=tmp_path, env=fresh_environment())
    assert cli.returncode == 0, cli.stderr[-3000:]
    recorded = [json.loads(p.read_text())["environment"]["openmp_wait"] for p in (api_out, cli_out)]
    assert recorded == [BOUNDED, BOUNDED]
