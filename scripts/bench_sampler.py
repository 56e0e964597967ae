"""What the sampler costs a round: round time with sampling at 0.1 s and 0.01 s vs off.

One mode is started once; then each repetition runs one round per setting (off, 0.1 s,
0.01 s) in a rotating order, so that drift (thermal, other load) hits every setting alike.
A setting's sampler samples every device of the run and is started before its round and
stopped after it, as in ``gpubench compare``. Prints per setting the median round time and
the ratio to "off" with a 95% bootstrap interval.

    python scripts/bench_sampler.py --devices cpu:2 --mode serial --repeats 15
    python scripts/bench_sampler.py --devices cuda --mode serial --repeats 15
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from gpubench.machine.isolation import bound_openmp_wait  # noqa: E402

bound_openmp_wait()  # as the command line does, before anything loads torch

from gpubench.config import RunConfig, SampleSizes, TrainConfig  # noqa: E402
from gpubench.monitor import create_sampler  # noqa: E402
from gpubench.results import PHASE_ROUND  # noqa: E402
from gpubench.run.harness import open_mode, prepare  # noqa: E402
from gpubench.stats import bootstrap_ratio, median  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="auto")
    p.add_argument("--mode", default="serial")
    p.add_argument("--case", default="cnn")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--samples-per-client", default="512")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--intervals", default="0.1,0.01")
    p.add_argument("--backend", default="auto", choices=("auto", "nvml", "host"))
    args = p.parse_args(argv)

    intervals = [float(x) for x in args.intervals.split(",")]
    config = RunConfig(
        case=args.case,
        clients=args.clients,
        train=replace(TrainConfig(), samples=SampleSizes.parse(args.samples_per_client)),
        devices=args.devices,
        modes=(args.mode,),
    )
    prep = prepare(config)
    settings: list[float | None] = [None, *intervals]
    times: dict[float | None, list[float]] = {s: [] for s in settings}
    backend = "-"
    with open_mode(config, args.mode, prep) as session:
        session.run_round()  # warm-up
        pids = dict(session.mode.pids())
        for rep in range(args.repeats):
            k = rep % len(settings)
            for setting in settings[k:] + settings[:k]:
                sampler = None
                if setting is not None:
                    sampler = create_sampler(prep.all_devices, setting, backend=args.backend)
                    sampler.start()
                    sampler.watch_pids(args.mode, pids)
                    sampler.mark(args.mode, PHASE_ROUND, rep)
                seconds, _, _ = session.run_round()
                if sampler is not None:
                    sampler.stop()
                    backend = sampler.results_section()["backend"]
                times[setting].append(seconds)

    off = times[None]
    print(
        f"mode {args.mode} on {args.devices} ({', '.join(d.id for d in prep.devices)}), "
        f"case {args.case}, {args.clients} clients, {args.repeats} rounds per setting, "
        f"backend {backend}"
    )
    print(f"  off      median round {median(off):.4f} s")
    for s in intervals:
        ci = bootstrap_ratio([times[s]], [off])
        print(
            f"  {s:<6g} s median round {median(times[s]):.4f} s   ratio to off "
            f"{ci.estimate:.4f} (95% CI {ci.low:.4f}..{ci.high:.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
