"""The ablation of cache steering on held-out items: its points, a real (tiny) run of two, and bad points."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachesteer_lite.findings import STORED_MODEL
from cachesteer_lite.runs.ablation import (
    ABLATION_BASE,
    ABLATION_VALUES,
    ablation_points,
    ablation_rows,
    ablation_table,
    run_ablation,
    stored_ablation_dir,
)
from cachesteer_lite.runs.config import EvalConfig
from cachesteer_lite.runs.paper import load_paper_results, paper_ablation
from cachesteer_lite.runs.records import read_records
from cachesteer_lite.runs.statistics import mcnemar_p


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
        assert row["n"] == 2 and 0 <= row["phrase_accuracy"] <= row["response_accuracy"] <= row["stated"] <= 1
        records = read_records(Path(row["run_dir"]) / "items.jsonl")
        assert sorted(records) == [0, 1]  # ARC's validation items 0 and 1, never the test split
    assert {Path(row["run_dir"]).name for row in rows} == {"n4_k1_c1_c_keys0", "n4_k1_c1_c_keys0.5"}
    assert "p_value" not in rows[0] and rows[1]["gained"] + rows[1]["lost"] <= 2
    table = ablation_table(tmp_path, base, {"c_keys": (0.0, 0.5), "c_values": (1.0, 2.0)})
    assert table.count("| c_keys |") == 2 and table.count("| c_values |") == 1  # the base point in each block
    assert "(p = " in table and table.endswith("Not run yet: n4_k1_c2_c_keys0.")
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


def test_the_papers_ablation_is_transcribed_whole() -> None:
    """Section 3.2 of paper-reference: four grids around one base point, which scores 55.03 in each."""
    reference, grids = load_paper_results()["ablation"], paper_ablation()
    assert (reference["model"], reference["task"], reference["n"]) == ("Llama-3.2-1B-Instruct", "arc_challenge", 1172)
    assert {name: len(values) for name, values in grids.items()} == {
        "n_pairs": 10, "n_demonstrations": 5, "c_values": 10, "c_keys": 5}
    for name, value in reference["base"].items():
        assert grids[name][value] == 55.03
    assert grids["n_demonstrations"][3.0] == 52.39 and grids["c_keys"][0.3] == 56.40


def test_the_stored_ablation_is_recounted_from_its_records() -> None:
    """Every stored point's accuracy and its comparison with the base point, recounted from the items files."""
    rows = ablation_rows(stored_ablation_dir(STORED_MODEL))
    assert len(rows) == len(ablation_points())  # every point of the default ablation is stored
    correct = {row["run_dir"]: {i: bool(record["correct"])
                                for i, record in read_records(Path(row["run_dir"]) / "items.jsonl").items()}
               for row in rows}
    base = next(correct[row["run_dir"]] for row in rows if row["varied"] is None)
    for row in rows:
        point = correct[row["run_dir"]]
        assert set(point) == set(base) and row["n"] == len(point)
        assert row["accuracy"] == pytest.approx(sum(point.values()) / len(point))
        if row["varied"] is not None:
            gained = sum(point[i] and not base[i] for i in point)
            lost = sum(base[i] and not point[i] for i in point)
            assert (row["gained"], row["lost"]) == (gained, lost)
            assert row["p_value"] == pytest.approx(mcnemar_p(gained, lost))
