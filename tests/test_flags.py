"""Every flag of every vae-* command: a help string with its default and its choices, and in
each mode of its command either work or a one-line refusal (a flag that does nothing is a
bug)."""

import argparse
import dataclasses

import pytest

from inference import cli
from inference.cli_args import (
    DISENTANGLEMENT_METRICS,
    EVAL_MODES,
    encode_parser,
    eval_parser,
    ood_modes,
    ood_parser,
    plot_parser,
    sample_parser,
    train_parser,
)
from inference.config import RunConfig
from inference.owndata.impute_cli import impute_parser

PARSERS = {"vae-train": train_parser, "vae-eval": eval_parser, "vae-plot": plot_parser,
           "vae-sample": sample_parser, "vae-encode": encode_parser, "vae-ood": ood_parser,
           "vae-impute": impute_parser}
MAINS = {"vae-train": cli.train_main, "vae-eval": cli.eval_main, "vae-ood": cli.ood_main}


def options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def flag(action) -> str:
    return max(action.option_strings, key=len)


def spellings(value) -> list[str]:
    """How a help string may write a default: 10000, 10,000, 1e-08, 0.001..."""
    out = {str(value)}
    if isinstance(value, float):
        out |= {f"{value:g}", repr(value)}
    if isinstance(value, int) and not isinstance(value, bool):
        out.add(f"{value:,}")
    return sorted(out)


@pytest.mark.parametrize("command", PARSERS)
def test_every_flag_has_help_with_its_default_and_choices(command):
    parser = PARSERS[command]()
    for action in [a for a in parser._actions if a.dest != "help"]:
        text = action.help or ""
        assert text.strip(), f"{command} {action.dest}: no help"
        if isinstance(action, argparse._StoreTrueAction) or not action.option_strings:
            continue
        assert "default" in text or action.required, f"{command} {flag(action)}: {text}"
        if action.default not in (None, False):
            assert any(s in text for s in spellings(action.default)), (command, flag(action))
        if action.choices is not None and action.metavar is not None:
            missing = [c for c in action.choices if str(c) not in text]  # not shown by argparse
            assert not missing, f"{command} {flag(action)}: {missing} not in its help"


def test_vae_train_help_states_runconfigs_defaults():
    """vae-train's flags default to None and take RunConfig's defaults: the help says them."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)
                if f.default is not dataclasses.MISSING and f.default is not None}
    for action in options(train_parser()):
        if action.dest in defaults and action.dest not in ("device",):
            assert any(s in action.help for s in spellings(defaults[action.dest])), action.dest


def test_the_disentanglement_metric_names_are_the_metrics():
    from inference.disentangle.metrics import METRICS

    assert DISENTANGLEMENT_METRICS == tuple(METRICS)


def test_the_module_docstring_names_every_command():
    import inference.cli_args

    for command in PARSERS:
        assert f"``{command}``" in inference.cli_args.__doc__


def other_value(action) -> list[str]:
    """Words that set ``action`` away from its default (a valid value of its type)."""
    if isinstance(action, argparse._StoreTrueAction):
        return []
    if action.choices is not None:
        return [next(str(c) for c in action.choices if c != action.default)]
    if action.type is int:
        return [str((action.default or 0) + 3)]
    if action.type is float:
        return [str((action.default or 0) + 0.5)]
    kind = getattr(action.type, "__name__", "")
    if kind == "parse":  # a names_list
        return {"metrics": ["mig"], "sampler": ["gmm"]}.get(action.dest, ["noise"])
    if kind in ("_widths", "_json_dict"):
        return {"_widths": ["64"], "_json_dict": ['{"a": 1}']}[kind]
    return ["elsewhere"]


def refused(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err  # one line
    return err


EVAL_MODE_FLAGS = {"likelihood": [], "quality": ["--quality"],
                   "disentanglement": ["--disentanglement"],
                   "samplers": ["--quality", "--sampler", "gmm"]}


@pytest.mark.parametrize("mode", EVAL_MODE_FLAGS)
def test_vae_eval_refuses_in_one_line_each_flag_its_mode_does_not_use(mode, tmp_path, capsys):
    parser, checked = eval_parser(), 0
    for action in options(parser):
        if action.dest not in EVAL_MODES or mode in EVAL_MODES[action.dest]:
            continue
        argv = [str(tmp_path / "no-run"), *EVAL_MODE_FLAGS[mode], flag(action),
                *other_value(action)]
        err = refused(capsys, cli.eval_main, argv)
        assert f"{flag(action)} does nothing" in err and "drop it" in err, err
        checked += 1
    assert checked >= 4
    err = refused(capsys, cli.eval_main, [str(tmp_path), "--quality", "--disentanglement"])
    assert "run vae-eval once for each" in err


def test_every_flag_of_vae_eval_and_vae_ood_says_where_it_works():
    """The mode tables are complete: a flag is either named there or works everywhere."""
    everywhere = {"run", "seed", "quiet", "checkpoint", "device", "threads", "data_dir",
                  "no_download", "quality", "disentanglement"}
    assert {a.dest for a in eval_parser()._actions} - {"help"} == everywhere | set(EVAL_MODES)
    everywhere = {"run", "against", "score", "limit", "bootstrap", "seed", "checkpoint",
                  "device", "threads", "data_dir", "no_download"}
    assert {a.dest for a in ood_parser()._actions} - {"help"} == everywhere | set(ood_modes())


def test_vae_ood_refuses_a_flag_of_a_score_not_asked_for(tmp_path, capsys):
    modes = ood_modes()
    for action in options(ood_parser()):
        if action.dest not in modes:
            continue
        other = next(s for s in ("nll", "regret", "complexity", "typicality", "ratio")
                     if s not in modes[action.dest])
        err = refused(capsys, cli.ood_main, [str(tmp_path), "--against", "noise", "--score",
                                             other, flag(action), *other_value(action)])
        assert f"{flag(action)} does nothing with --score {other}" in err, err


def test_lists_take_spaces_or_commas_alike():
    parser = ood_parser()
    spaced = parser.parse_args(["r", "--against", "noise", "--score", "nll", "complexity"])
    commas = parser.parse_args(["r", "--against", "noise", "--score", "nll,complexity"])
    assert cli.unique(spaced.score, ()) == cli.unique(commas.score, ()) == ["nll", "complexity"]
    metrics = eval_parser().parse_args(["r", "--metrics", "mig", "dci,sap"]).metrics
    assert cli.unique(metrics, ()) == ["mig", "dci", "sap"]
    figures = plot_parser().parse_args(["r", "samples,curves", "latents"]).figures
    assert cli.unique(figures, ()) == ["samples", "curves", "latents"]


def test_parse_errors_are_one_line(capsys):
    for main, argv, words in (
            (cli.ood_main, ["r", "--against", "noise", "--score", "nll,bogus"], "'bogus'"),
            (cli.eval_main, ["r", "--split", "training"], "invalid choice: 'training'"),
            (cli.train_main, ["--epochs", "x"], "invalid int value"),
            (cli.eval_main, ["r", "--metrics", "mig,nope"], "unknown metric 'nope'")):
        err = refused(capsys, main, argv)
        assert words in err and err.endswith("--help)"), err


def test_vae_train_list_takes_no_other_flag(capsys):
    for action in options(train_parser()):
        if action.dest == "list":
            continue
        err = refused(capsys, cli.train_main, ["--list", flag(action), *other_value(action)])
        assert f"{flag(action)} does nothing with --list" in err, err


@pytest.mark.parametrize("argv, words", [
    (["--alpha", "10"], "--alpha is for semi-supervised training (--loss m2)"),
    (["--labels", "100"], "--labels is for semi-supervised training (--loss m2)"),
    (["--labelled-every", "2"], "--labelled-every is for semi-supervised training"),
    (["--model", "m2", "--guide", "m2", "--loss", "m2", "--labelled-every", "2"],
     "--labelled-every schedules the labelled batches of --labels N"),
    (["--dataset", "binarized-mnist", "--binarize", "static"], "--binarize does nothing on "
                                                              "binarized-mnist"),
    (["--dataset", "sprites", "--binarize", "none"], "--binarize does nothing on sprites"),
    (["--valid", "0", "--patience", "2"], "--patience stops on the validation ELBO"),
    (["--model", "two_layer", "--guide", "two_layer", "--z-dim", "8"],
     "--z-dim does nothing here: neither the model two_layer nor the guide two_layer"),
    (["--model", "vqvae", "--guide", "vqvae", "--loss", "vq", "--hidden", "64"],
     "--hidden does nothing here"),
])
def test_vae_train_refuses_a_setting_this_run_would_not_use(argv, words, tmp_path, capsys):
    err = refused(capsys, cli.train_main, [*argv, "--epochs", "1", "--quiet",
                                           "--out", str(tmp_path / "run")])
    assert words in err, err
    assert not (tmp_path / "run" / "config.json").exists()  # refused before any work
