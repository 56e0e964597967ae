"""``gpubench predict``: round time and speedup on K devices from one run's client times."""

from __future__ import annotations

import argparse
import json

from gpubench.gate.inputs import read_measured_results
from gpubench.predict import format_prediction, predict

HELP = "predict the round time and speedup on K devices from a results file's serial times"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", help="a gpubench compare results file")
    parser.add_argument(
        "--devices", type=int, required=True, metavar="K", help="how many devices to predict for"
    )
    parser.add_argument(
        "--assign",
        choices=("round-robin", "balanced"),
        default=None,
        help="client to device assignment (default: the run's own --assign)",
    )
    parser.add_argument("--json", action="store_true", help="print the prediction as JSON")


def run(args: argparse.Namespace) -> int:
    prediction = predict(read_measured_results(args.results), args.devices, args.assign)
    if args.json:
        print(json.dumps(prediction.to_dict(), indent=1, sort_keys=True))
    else:
        print(format_prediction(prediction))
    return 0
