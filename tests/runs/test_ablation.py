"""The ablation of cache steering on held-out items: its points, a real (tiny) run of two, and bad points."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachesteer_lite.runs.ablation import ABLATION_BASE, ABLATION_VALUES, ablation_points, ablation_rows, run_ablation
from cachesteer_lite.runs.config import EvalConfig
from cachesteer_lite.runs.records import read_records


def test_the_points_vary_one_setting_at_a_time_around_the_base() -> None:
    points = ablation_points()
    assert points[0] == ABLATION_BASE
    assert len(points) == 1 + sum(len(values) - 1 for values in ABLATION_VALUES.values())  # the base once
    for point in points[1:]:
        assert sum(point[name] != ABLATION_BASE[name] for name in ABLATION_BASE) == 1
    with pytest.raises(ValueError, match="no base value for layers"):
        ablation_points(ABLATION_BASE, {"layers": (1, 2)})


def test_a_tiny_ablation_runs_on_held_out_items_and_resumes(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    base = {"n_pairs": 4, "n_demonstrations": 1, "c_values": 1.0, "c_keys": 0.0}
    points = [base, {**base, "c_keys": 0.5}]
    config = EvalConfig("arc_challenge", "cache_steering", max_new_tokens=4, batch_size=2)
    run_ablation(model, tokenizer, config, tmp_path, limit=2, points=points, progress=False)
    rows = ablation_rows(tmp_path, base)
    assert [row["varied"] for row in rows] == [None, "c_keys"]
    for row in rows:
        assert row["n"] == 2 and 0 <= row["response_accuracy"] <= row["stated"] <= 1
        records = read_records(Path(row["run_dir"]) / "items.jsonl")
        assert sorted(records) == [0, 1]  # ARC's validation items 0 and 1, never the test split
    assert {Path(row["run_dir"]).name for row in rows} == {"n4_k1_c1_c_keys0", "n4_k1_c1_c_keys0.5"}
    before = (tmp_path / "n4_k1_c1_c_keys0" / "items.jsonl").read_text()
    run_ablation(model, tokenizer, config, tmp_path, limit=2, points=points, progress=False)  # resumes: no new work
    assert (tmp_path / "n4_k1_c1_c_keys0" / "items.jsonl").read_text() == before


def test_a_point_with_too_few_pairs_is_refused_before_anything_runs(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("arc_challenge", "cache_steering", max_new_tokens=4)
    with pytest.raises(ValueError, match="more pairs than demonstrations"):
        run_ablation(model, tokenizer, config, tmp_path, limit=2,
                     points=[{"n_pairs": 3, "n_demonstrations": 3, "c_values": 1.0, "c_keys": 0.0}])
    assert not any(tmp_path.iterdir())
