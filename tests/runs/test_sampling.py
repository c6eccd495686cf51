"""The sampling table: the sampled baseline and cache steering compared seed by seed, from the records."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachesteer_lite.runs.answer_source import stated_answer
from cachesteer_lite.runs.config import EvalConfig
from cachesteer_lite.runs.paper import PAPER_SEEDS
from cachesteer_lite.runs.records import read_json, read_records
from cachesteer_lite.runs.results import stored_run_folder
from cachesteer_lite.runs.runner import evaluate, run_directory
from cachesteer_lite.runs.sampling import (
    BASELINE,
    STEERING,
    compare_seeds,
    item_gains,
    mean_sd,
    response_alone,
    sampling_summary,
    sampling_table,
)

MODEL = "smollm2-135m-instruct"


def _records(correct: list[bool]) -> dict[int, dict]:
    return {i: {"correct": right} for i, right in enumerate(correct)}


def test_each_seed_is_paired_with_the_same_seed() -> None:
    baseline = {1: _records([True, False, False, False]), 2: _records([True, True, False, False])}
    steered = {2: _records([True, False, True, True]), 1: _records([False, True, True, False])}
    pairs = compare_seeds(baseline, steered)
    assert [pair.seed for pair in pairs] == [1, 2]
    assert [(pair.only_baseline, pair.only_steered) for pair in pairs] == [(1, 2), (1, 2)]
    assert [pair.bias for pair in pairs] == [25.0, 25.0]
    assert mean_sd([pair.bias for pair in pairs]) == (25.0, 0.0)
    gains = item_gains(baseline, steered)
    assert gains == [-50.0, 0.0, 100.0, 50.0] and sum(gains) / len(gains) == 25.0  # per item, over both seeds


def test_runs_of_different_seeds_or_items_are_refused() -> None:
    with pytest.raises(ValueError, match="different seeds"):
        compare_seeds({1: _records([True])}, {2: _records([True])})
    with pytest.raises(ValueError, match="different items"):
        compare_seeds({1: _records([True])}, {1: _records([True, False])})


def test_a_task_without_sampled_runs_is_named_not_invented(tmp_path: Path) -> None:
    assert sampling_summary("arc_challenge", MODEL, tmp_path) is None
    assert "yet for: arc_challenge, csqa" in sampling_table(MODEL, results_dir=tmp_path)


@pytest.mark.slow
def test_the_summary_is_recounted_from_real_sampled_runs(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    tiny = {"limit": 3, "batch_size": 3, "max_new_tokens": 4}
    for method, settings in ((BASELINE, {}), (STEERING, {"n_pairs": 2, "n_demonstrations": 1, "c_values": 4.0})):
        for do_sample in (False, True):
            config = EvalConfig("arc_challenge", method, do_sample=do_sample, seeds=(1, 2) if do_sample else None,
                                **tiny, **settings)
            run_dir = run_directory(tmp_path, MODEL, "arc_challenge", method, sampling=do_sample)
            evaluate(model, tokenizer, config, run_dir, progress=False)
    summary = sampling_summary("arc_challenge", MODEL, tmp_path)
    assert summary is not None and [pair.seed for pair in summary.pairs] == [1, 2]
    for pair in summary.pairs:
        sampled = {method: read_records(stored_run_folder("arc_challenge", method, MODEL, tmp_path) / "sampling"
                                        / f"items_seed{pair.seed}.jsonl") for method in (BASELINE, STEERING)}
        assert pair.n == 3
        assert pair.baseline_correct == sum(r["correct"] for r in sampled[BASELINE].values())
        assert pair.steered_correct == sum(r["correct"] for r in sampled[STEERING].values())
    greedy = read_records(stored_run_folder("arc_challenge", BASELINE, MODEL, tmp_path) / "items.jsonl")
    assert summary.greedy_baseline == pytest.approx(100 * sum(r["correct"] for r in greedy.values()) / 3)
    row = next(line for line in sampling_table(MODEL, results_dir=tmp_path).splitlines()
               if line.startswith("| arc_challenge |"))
    assert row.startswith("| arc_challenge | 3 × 2 |") and "24.16 ± 1.13" in row and "+0.36" in row
    assert [sources.n for sources in summary.baseline_sources + summary.steered_sources] == [3] * 4
    assert summary.pooled["mean"] == pytest.approx(sum(summary.bias) / 2)


@pytest.mark.parametrize("task", ["arc_challenge", "csqa"])
def test_the_stored_sampling_runs_are_recounted_from_their_records(task: str) -> None:
    summary = sampling_summary(task, MODEL)
    assert summary is not None, f"the book ships the sampled baseline and cache steering of {task}"
    assert tuple(pair.seed for pair in summary.pairs) == PAPER_SEEDS
    folders = {method: stored_run_folder(task, method, MODEL) / "sampling" for method in (BASELINE, STEERING)}
    greedy = read_json(stored_run_folder(task, STEERING, MODEL) / "results.json")
    steered_config = read_json(folders[STEERING] / "results.json")["config"]
    assert all(steered_config[key] == greedy["config"][key] for key in ("n_pairs", "n_demonstrations", "c_values"))
    assert summary.greedy_baseline is not None and summary.greedy_steered is not None  # the greedy table's questions
    for method, accuracies, sources in ((BASELINE, summary.baseline, summary.baseline_sources),
                                        (STEERING, summary.steered, summary.steered_sources)):
        result = read_json(folders[method] / "results.json")
        assert result["generation"]["temperature"] == 0.6 and result["generation"]["top_k"] == 50
        for run, accuracy, counted in zip(result["runs"], accuracies, sources, strict=True):
            records = read_records(folders[method] / run["items_file"])
            assert len(records) == run["n"] == greedy["n"]
            assert accuracy == pytest.approx(100 * sum(r["correct"] for r in records.values()) / greedy["n"])
            assert counted.stated == sum(stated_answer(r["response"]) is not None for r in records.values())
        assert mean_sd(accuracies)[0] == pytest.approx(100 * result["accuracy"])
    row = next(line for line in sampling_table(MODEL).splitlines() if line.startswith(f"| {task} |"))
    (base_stated, base_alone, base_phrase), (steered_stated, steered_alone, steered_phrase) = (
        response_alone(sources) for sources in (summary.baseline_sources, summary.steered_sources))
    assert (f"| {base_stated:.0f} / {steered_stated:.0f} | {base_alone:.1f} ({base_phrase:.1f}) / "
            f"{steered_alone:.1f} ({steered_phrase:.1f}) |") in row
    assert f"| {summary.pooled['mean']:+.2f} [" in row
