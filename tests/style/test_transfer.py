"""The style-transfer grid: ordinary resumable runs per (style, coefficient), scored by both adherence measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachesteer_lite.runs.records import read_records
from cachesteer_lite.style.classifier import StyleClassifier, adherence
from cachesteer_lite.style.transfer import run_style_transfer, style_run_dir

TINY = {"limit": 2, "n_pairs": 6, "n_demonstrations": 1, "max_new_tokens": 8, "batch_size": 2, "progress": False}


@pytest.mark.slow
def test_grid_runs_scores_and_resumes(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    summary = run_style_transfer(model, tokenizer, styles=("stepwise", "analogical"), c_values=(2.0, 8.0),
                                 output_dir=tmp_path, **TINY)
    rows = summary["rows"]
    assert [(r["steered_style"], r["scored_style"], r["c_values"]) for r in rows] == [
        ("unsteered", "stepwise", 0.0), ("unsteered", "analogical", 0.0),
        ("stepwise", "stepwise", 2.0), ("stepwise", "stepwise", 8.0),
        ("analogical", "analogical", 2.0), ("analogical", "analogical", 8.0)]
    assert summary["classifier_held_out"]["accuracy"] >= 0.8  # the shipped classifier's measured 0.85, held out
    run = style_run_dir(tmp_path, "smollm2-135m-instruct", "analogical", 8.0)
    config = json.loads((run / "results.json").read_text())["config"]
    assert (config["style"], config["c_values"], config["n_pairs"]) == ("analogical", 8.0, 6)
    # The summary's counts are the adherence of the stored answers, recomputed here from the records.
    records = read_records(run / "items.jsonl")
    again = adherence([records[i]["response"] for i in sorted(records)], "analogical", StyleClassifier.shipped())
    assert (rows[-1]["rules_count"], rows[-1]["classifier_count"]) == (again["rules"]["count"],
                                                                     again["classifier"]["count"])
    assert sum(summary["confusion"]["rules"]["8"]["stepwise"].values()) == 2  # two stepwise-steered answers
    stored = json.loads((run.parent.parent / "summary.json").read_text())
    assert stored["rows"] == rows
    before = (run / "items.jsonl").read_text()
    assert run_style_transfer(model, tokenizer, styles=("stepwise", "analogical"), c_values=(2.0, 8.0),
                              output_dir=tmp_path, **TINY)["rows"] == rows  # resumed: nothing generated again
    assert (run / "items.jsonl").read_text() == before


def test_unknown_style_is_refused(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    with pytest.raises(ValueError, match="choose from stepwise, strategy_execution"):
        run_style_transfer(model, tokenizer, styles=("poetic",), output_dir=tmp_path, **TINY)
