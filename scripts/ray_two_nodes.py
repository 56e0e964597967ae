"""The ray mode on a two-node Ray cluster started on this machine, beside serial
and multi-gpu, for the figure in docs/scaling-out.md:

    python scripts/ray_two_nodes.py --out /tmp/two-nodes.json [compare options]

Starts a head node and a second node, each offering one CPU (``ray.cluster_utils.Cluster``),
runs ``gpubench compare --modes serial,multi-gpu,ray --devices cpu:2 --ray-address ...`` in
this process (each actor reserves its slot's one core, so Ray places one on each node), prints
each mode's round time, speedup and the node each ray actor ran on, and stops the cluster.
Extra arguments go to ``compare`` (e.g. ``--clients 20 --rounds 5``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubench.isolation import bound_openmp_wait  # noqa: E402

bound_openmp_wait()  # as the command line does, before anything loads torch

from gpubench.commands.compare import add_run_arguments, config_from_args  # noqa: E402
from gpubench.harness import compare  # noqa: E402
from gpubench.results import write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from ray.cluster_utils import Cluster

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--out", default=None, help="results JSON")
    args = p.parse_args(["--modes", "serial,multi-gpu,ray", "--devices", "cpu:2",
                         *(argv if argv is not None else sys.argv[1:])])
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        config = config_from_args(args)
        config = replace(config, options={**config.options, "ray_address": cluster.address})
        results = compare(config, command="scripts/ray_two_nodes.py " + " ".join(
            argv if argv is not None else sys.argv[1:]))
    finally:
        cluster.shutdown()
    if args.out:
        write_results(results, args.out)
    print(f"{'mode':<11}{'status':<8}{'round s':>9}{'speedup':>9}  same as serial  nodes")
    for m in results.modes:
        nodes = sorted({(w.node or "?")[:8] for w in m.worker_memory}) if m.name == "ray" else []
        speed = f"{m.speedup_vs_serial:.2f}x" if m.speedup_vs_serial else "-"
        print(f"{m.name:<11}{m.status:<8}{(m.median_round_s or 0):>9.3f}{speed:>9}  "
              f"{str(m.same_result):<14}  {', '.join(nodes)}" + (f"  {m.error}" if m.error else ""))
    return 0 if all(m.ok and m.same_result is not False for m in results.modes) else 1


if __name__ == "__main__":
    sys.exit(main())
