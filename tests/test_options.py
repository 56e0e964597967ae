"""The one option table (gpubench.options): the parsers of compare and sweep are made of it,
sweep offers only what it honours, SWEEPABLE is its sweepable set, config's messages name its
flags, and a config spelled as a command line by it parses back to the same config."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from typing import Any

import pytest

from gpubench import config as config_module
from gpubench.api import with_value
from gpubench.cli import build_parser, run_config
from gpubench.commands.arguments import config_from_args
from gpubench.commands.sweep import swept_parameter
from gpubench.config import RunConfig
from gpubench.gate import DEFAULT_INCONCLUSIVE, INCONCLUSIVE_POLICIES
from gpubench.options import (
    OPTIONS,
    SWEEP,
    SWEEPABLE,
    flag_of,
    help_for,
    options_of,
)
from gpubench.run import sweep as run_sweep
from gpubench.run.faq_plan import FULL, MEMORY_MODES, QUICK, command_for
from gpubench.run.faq_plan import run_config as plan_config


def _parser(command: str) -> argparse.ArgumentParser:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_every_flag_of_compare_and_sweep_comes_from_the_table(command: str) -> None:
    parser = _parser(command)
    assert _flags(parser) == {s for o in options_of(command) for s in o.spellings}
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for option in options_of(command):
        action = actions[option.flag]
        assert action.dest == option.dest, option.flag
        assert action.choices == option.choices, option.flag
        if option.action != "store_const":
            assert action.default == option.default, option.flag
        if option.hidden:
            assert action.help == argparse.SUPPRESS
        elif command == SWEEP and option.sweepable:
            assert action.help == f"{help_for(option, command)}; A,B,C sweeps it"
        else:
            assert action.help == help_for(option, command)
    shown = parser.format_help()
    assert all(o.flag in shown for o in options_of(command) if not o.hidden)
    assert "--gate: what an INCONCLUSIVE" in _parser("compare").format_help()


def test_a_flag_is_offered_once_per_command_and_gates_policies_are_the_tables() -> None:
    for command in ("compare", "sweep", "gate"):
        spellings = [s for o in options_of(command) for s in o.spellings]
        assert len(spellings) == len(set(spellings)), command
    inconclusive = next(o for o in OPTIONS if o.flag == "--inconclusive")
    assert (inconclusive.choices, inconclusive.default) == (INCONCLUSIVE_POLICIES,
                                                            DEFAULT_INCONCLUSIVE)
    gate = _parser("gate")
    assert {"--inconclusive", "--strict"} <= _flags(gate)
    args = gate.parse_args(["--baseline", "b.json", "r.json", "--strict"])
    assert args.inconclusive == "fail"


@pytest.mark.parametrize("ignored", [["--counterfactual", "off"], ["--verbose"], ["-v"]])
def test_sweep_refuses_a_flag_it_would_ignore_with_one_line_and_exit_2(
    ignored: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    parser, _ = build_parser()  # what main() parses with; parsing alone: nothing would run
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["sweep", "--batch-size", "32,64", *ignored])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unrecognized arguments: {' '.join(ignored)}" in err
    # compare, which honours it, still takes it
    args = vars(_parser("compare").parse_args(ignored))
    assert args["counterfactual"] == "off" or args["verbose"] is True


def test_sweepable_is_the_tables_sweepable_set_and_what_sweep_parses_as_a_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_sweep.SWEEPABLE == SWEEPABLE
    assert set(SWEEPABLE) == {o.dest for o in OPTIONS if o.sweepable}
    assert all(SWEEPABLE[o.dest] == o.flag for o in OPTIONS if o.sweepable)
    parser = _parser("sweep")
    listed = set()
    for option in options_of(SWEEP):
        if option.action is not None:
            continue
        try:
            value = getattr(parser.parse_args([option.flag, "1,2"]), option.dest)
        except SystemExit:  # not a number, not a choice: one value at most
            continue
        if isinstance(value, list):
            assert len(value) == 2, option.flag
            listed.add(option.dest)
    capsys.readouterr()
    assert listed == set(SWEEPABLE)


SWEPT_VALUES: dict[str, Any] = {"batch_size": 16, "clients": 3, "samples_per_client": "64..96",
                                "local_epochs": 2, "lr": 0.2, "workers": 3,
                                "workers_per_device": 2, "case": "mlp"}  # fmt: skip


@pytest.mark.parametrize("dest", sorted(SWEEPABLE))
def test_every_sweepable_option_sets_the_field_the_table_names(dest: str) -> None:
    option = next(o for o in options_of(SWEEP) if o.dest == dest)
    changed = with_value(RunConfig(), dest, SWEPT_VALUES[dest])
    assert changed != RunConfig()
    assert str(option.value_in(changed)) == str(SWEPT_VALUES[dest])


def test_configs_rules_name_the_flags_of_the_tables_fields() -> None:
    rules = {"train.pipeline": config_module._PIPELINE_RULES, "train": config_module._TRAIN_RULES,
             "": config_module._RUN_RULES, "options": config_module._OPTION_RULES}  # fmt: skip
    named = set()
    for place, table in rules.items():
        for name, rule in table.items():
            if not rule.flag:  # a nested config, or the options dict: no flag of its own
                continue
            field = f"{place}.{name}" if place else name
            spelling = {o.flag for o in OPTIONS if o.field == field}
            assert rule.flag in spelling, (field, rule.flag)
            named.add(field)
    assert named == {o.field for o in OPTIONS if o.field is not None}
    with pytest.raises(config_module.ConfigError, match=f"^{flag_of('clients')} must be"):
        RunConfig(clients=0).validate()


ROUND_TRIPS = [
    [],
    ["--case", "mlp", "--clients", "3", "--batch-size", "16", "--local-epochs", "2",
     "--samples-per-client", "32..64", "--lr", "0.01", "--momentum", "0.5", "--partition",
     "dirichlet:0.5", "--seed", "7", "--devices", "cpu:2", "--assign", "dynamic", "--modes",
     "serial,threaded", "--workers", "3", "--workers-per-device", "2", "--warmup", "0",
     "--rounds", "5", "--tolerance", "0.01", "--timeout", "30", "--sequential",
     "--sample-interval", "0", "--data-budget", "1M", "--vectorize-chunk", "4",
     "--gpus-per-worker", "0.5", "--cpus-per-worker", "2", "--ray-address", "auto"],
    ["--preset", "flower-like", "--pin-memory", "--optimizer", "adam", "--amp", "bf16",
     "--torch-threads", "2", "--loader-start", "spawn", "--persistent-workers"],
    ["--loader", "dataloader", "--loader-workers", "1", "--client-setup", "fresh",
     "--sync-loss", "--sample-interval", "0.5"],
    ["--mps", "on", "--modes", "serial,multiprocess", "--assign", "balanced"],
]  # fmt: skip


@pytest.mark.parametrize("argv", ROUND_TRIPS)
def test_command_for_parses_back_to_the_same_config(argv: list[str]) -> None:
    config = run_config(argv)
    words = shlex.split(command_for(config))
    assert words[:2] == ["gpubench", "compare"]
    assert run_config(words[2:]) == config
    given = {a for a in argv if a.startswith("--")}
    said = {w for w in words if w.startswith("--")}
    assert given - {"--preset"} <= said  # every option given differs from its default


def _without_unset(config: RunConfig) -> RunConfig:
    """The command line sets every ray option, None where not given; a library config lacks them."""
    return replace(config, options={k: v for k, v in config.options.items() if v is not None})


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=lambda p: p.name)
def test_the_faq_plans_commands_parse_back_to_the_plans_configs(plan: Any) -> None:
    comparison = plan_config(plan, "cnn", "cpu:2")
    memory = replace(comparison, modes=MEMORY_MODES, interleave=False, rounds=4)
    for config in (comparison, memory):
        words = shlex.split(command_for(config))
        assert _without_unset(run_config(words[2:])) == config
    point = replace(comparison, modes=("serial",), interleave=False, rounds=plan.batch_rounds)
    words = shlex.split(command_for(point, "sweep", "32,128", ("--accuracy-rounds", "5")))
    assert words[:2] == ["gpubench", "sweep"]
    args = _parser("sweep").parse_args(words[2:])
    dest, values, fixed = swept_parameter(args)
    assert (dest, values, args.accuracy_rounds) == ("batch_size", [32, 128], 5)
    for value in values:
        made = config_from_args(argparse.Namespace(**{**vars(fixed), dest: value}))
        assert _without_unset(made) == replace(point, train=replace(point.train, batch_size=value))
