"""The command line answers a bad name or value with a usage error: exit status 2, one line saying what is
allowed, no traceback, before any model is loaded."""

from __future__ import annotations

import pytest

from cachesteer_lite.__main__ import main


@pytest.mark.parametrize("extra, message", [
    (["--task", "mmlu", "--method", "baseline"], "argument --task: invalid choice: 'mmlu'"),
    (["--task", "gsm8k", "--method", "magic"], "argument --method: invalid choice: 'magic'"),
    (["--task", "gsm8k", "--method", "cache_steering", "--c-values", "nan"], "must be a finite number"),
    (["--task", "gsm8k", "--method", "cache_steering", "--c-values", "six"], "could not convert string to float"),
    (["--task", "gsm8k", "--method", "baseline", "--limit", "0"], "must be at least 1"),
    (["--task", "gsm8k", "--method", "baseline", "--seeds", "1", "2"], "seeds are for sampling runs"),
    (["--task", "gsm8k", "--method", "caa", "--caa-mode", "always"], "argument --caa-mode: invalid choice"),
    (["--task", "gsm8k", "--method", "cache_augmentation"], "needs the option(s) checkpoint"),
    (["--task", "arc_challenge", "--method", "caa", "--layer", "x"], "argument --layer"),
])
def test_evaluate_refuses_bad_names_and_values_with_a_usage_error(capsys, extra, message):
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", *extra])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert [line for line in error.splitlines() if "error:" in line] == [error.splitlines()[-1]]


@pytest.mark.parametrize("argv", [
    ["augmentation", "train", "--out", "x", "--n-latents", "0"],
    ["augmentation", "perplexity", "--limit", "-3"],
    ["style-transfer", "--c-values", "inf"],
    ["teacher", "--task", "gsm9k", "--out", "x.jsonl"],
    ["teacher", "--task", "gsm8k", "--out", "x.jsonl", "--concurrency", "0"],
])
def test_every_command_checks_its_values(capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "Traceback" not in capsys.readouterr().err
