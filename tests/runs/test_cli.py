"""The command line answers a bad name or value with a usage error: exit status 2, one line saying what is
allowed, no traceback, before any model is loaded."""

from __future__ import annotations

import pytest

from cachesteer_lite.__main__ import main
from cachesteer_lite.runs.results import collect


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
    ["ablate", "--grid-n-pairs", "0"],
    ["ablate", "--grid-c-keys", "inf"],
    ["ablate", "--grid-n-demonstrations", "100", "--grid-n-pairs", "100"],
])
def test_every_command_checks_its_values(capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_a_sampling_run_is_kept_beside_the_greedy_run_of_the_same_method(tmp_path, capsys):
    """Greedy and sampled runs of one method have different settings: each gets its own folder, neither is refused."""
    common = ["evaluate", "--task", "piqa", "--method", "baseline", "--limit", "1", "--max-new-tokens", "2",
              "--output-dir", str(tmp_path), "--no-progress"]
    assert main(common) == 0
    assert main([*common, "--sampling", "--seeds", "7"]) == 0
    folder = tmp_path / "smollm2-135m-instruct" / "piqa" / "baseline"
    assert (folder / "results.json").is_file() and (folder / "sampling" / "results.json").is_file()
    assert (folder / "sampling" / "items_seed7.jsonl").is_file()
    [greedy], [sampled] = collect(tmp_path), collect(tmp_path, sampling=True)
    assert not greedy["config"]["do_sample"] and sampled["config"]["do_sample"]
