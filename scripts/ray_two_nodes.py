"""The ray mode on a two-node Ray cluster started on this machine, beside serial
and multi-gpu, for the figure in docs/scaling-out.md:

    python scripts/ray_two_nodes.py --out /tmp/two-nodes.json [compare options]

Starts a head node and a second node, each offering one CPU (``ray.cluster_utils.Cluster``),
runs ``gpubench compare --modes serial,multi-gpu,ray --devices cpu:2 --ray-address ...`` in
this process (each actor reserves its slot's one core, so Ray places one on each node),
prints the summary table ``gpubench compare`` prints and the nodes the ray actors ran on, and
stops the cluster.
Extra arguments go to ``compare`` (e.g. ``--clients 20 --rounds 5``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench.machine.isolation import bound_openmp_wait  # noqa: E402

bound_openmp_wait()  # as the command line does, before anything loads torch

from gpubench.cli import run_config  # noqa: E402
from gpubench.report.tables import format_summary_table  # noqa: E402
from gpubench.results import write_results  # noqa: E402
from gpubench.run.harness import compare  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from ray.cluster_utils import Cluster

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="results JSON")
    given = sys.argv[1:] if argv is None else argv
    args, run_options = p.parse_known_args(given)  # the rest are compare's options
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        config = run_config(["--modes", "serial,multi-gpu,ray", "--devices", "cpu:2",
                             *run_options])
        config = replace(config, options={**config.options, "ray_address": cluster.address})
        results = compare(config, command="scripts/ray_two_nodes.py " + " ".join(given))
    finally:
        cluster.shutdown()
    if args.out:
        write_results(results, args.out)
    print(format_summary_table(results))
    ray = results.mode("ray")
    if ray is not None:
        nodes = sorted({w.node or "?" for w in ray.worker_memory})
        print(f"ray actors ran on {len(nodes)} node(s): {', '.join(n[:8] for n in nodes)}")
    return 0 if all(m.ok and m.same_result is not False for m in results.modes) else 1


if __name__ == "__main__":
    sys.exit(main())
