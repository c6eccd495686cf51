"""The paper's reference figures and the comparison table."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import pytest

from cachesteer_lite.__main__ import main
from cachesteer_lite.runs.paper import load_paper_results, paper_entry, paper_model_for
from cachesteer_lite.runs.records import read_json
from cachesteer_lite.runs.results import collect, collect_grids, compare, comparison_table, measured_loop_shares
from cachesteer_lite.style.transfer import style_answers
from cachesteer_lite.tasks.quality import degenerate_share

from conftest import REPO

RESULTS_DIR = REPO / "data" / "results"

TASKS = ("gsm8k", "arc_challenge", "csqa", "piqa")


def test_every_cell_of_the_tables_is_present_once() -> None:
    reference = load_paper_results()
    models = list(dict.fromkeys(row["model"] for row in reference["greedy"]))
    greedy = [(r["model"], r["task"], r["method"]) for r in reference["greedy"]]
    methods = ("baseline", "cot", "cache_steering", "cache_steering_cot", "activation_steering")
    assert sorted(greedy) == sorted(product(models, TASKS, methods)) and len(models) == 6
    sampling = [(r["model"], r["task"], r["method"]) for r in reference["sampling"]]
    assert sorted(sampling) == sorted(product(models, TASKS, ("baseline", "cache_steering")))
    for row in reference["greedy"]:
        assert (row["accuracy"] is not None) == (row["status"] == "reported") == (row["mean_words"] is not None)


def test_spot_values() -> None:
    smol = "SmolLM2-360M-Instruct"
    entry = paper_entry("arc_challenge", "cache_steering", smol)
    assert (entry["accuracy"], entry["mean_words"]) == (27.13, 244)
    assert paper_entry("csqa", "baseline", smol)["accuracy"] == 19.74
    assert paper_entry("gsm8k", "baseline", smol)["status"] == "absent"
    assert paper_entry("arc_challenge", "cache_steering_cot", "Phi-4-mini-instruct")["status"] == "no_run"
    ambiguous = paper_entry("csqa", "cache_steering", "Llama-3.2-1B-Instruct")
    assert ambiguous["accuracy"] is None and "55.20" in ambiguous["note"]
    assert paper_entry("gsm8k", "caa", "Llama-3.2-3B-Instruct")["accuracy"] == 68.39
    sampled = paper_entry("arc_challenge", "cache_steering", "Llama-3.2-3B-Instruct", sampling=True)
    assert (sampled["accuracy_mean"], sampled["accuracy_sd"], sampled["n_runs"]) == (77.71, 0.82, 5)
    assert paper_entry("arc_challenge", "baseline", "Phi-4-mini-instruct", sampling=True)["runs"][0] == 84.39


def test_paper_model_of_the_same_family() -> None:
    assert paper_model_for("smollm2-135m-instruct") == "SmolLM2-360M-Instruct"
    assert paper_model_for("meta-llama/Llama-3.2-1B-Instruct") == "Llama-3.2-1B-Instruct"
    assert paper_model_for("Qwen/Qwen2-0.5B-Instruct") == "Qwen2-0.5B-Instruct"
    assert paper_model_for("gemma3-270m") is None


def _result(task: str, method: str, accuracy: float, sampling: bool = False, n: int = 300,
            model: str = "smollm2-135m-instruct") -> dict:
    return {"task": task, "method": method, "model": model, "n": n, "accuracy": accuracy,
            "ci95": None if sampling else [accuracy - 0.05, accuracy + 0.05], "accuracy_sd": 0.01 if sampling else None,
            "mean_words": 120.0, "degenerate": 0.1, "config": {"do_sample": sampling}}


def test_compare_and_table() -> None:
    rows = compare([_result("arc_challenge", "cache_steering", 0.30), _result("gsm8k", "cot", 0.05),
                    _result("piqa", "cache_steering", 0.5, sampling=True), _result("csqa", "new_method", 0.2)])
    assert rows[0]["paper_accuracy"] == 27.13 and rows[0]["paper_n"] == 1172
    assert rows[1]["difference"] is None and rows[1]["paper_status"] == "absent"
    assert rows[2]["paper_accuracy"] == 50.72 and rows[2]["paper_sd"] == 1.03
    assert rows[3]["paper_status"] == "not in the paper"
    table = comparison_table([_result("arc_challenge", "cache_steering", 0.30)])
    row = ("| smollm2-135m-instruct | arc_challenge | cache_steering | 300 | 30.00 [25.0, 35.0] | 120 | 10 | "
           "SmolLM2-360M-Instruct | 1172 | 27.13 | 244 | – |")
    assert row in table.splitlines()


def test_a_difference_is_printed_only_for_the_papers_model_on_its_whole_split() -> None:
    """A 12-question run, or another size of the model, is shown beside the paper's number, never subtracted."""
    same = _result("arc_challenge", "cache_steering", 0.30, n=1172, model="HuggingFaceTB/SmolLM2-360M-Instruct")
    assert abs(compare([same])[0]["difference"] - 2.87) < 1e-9
    assert "| +2.87 |" in comparison_table([same])
    for other in (_result("arc_challenge", "cache_steering", 0.55, n=12, model="HuggingFaceTB/SmolLM2-360M-Instruct"),
                  _result("arc_challenge", "cache_steering", 0.30, n=1172)):
        row = compare([other])[0]
        assert row["difference"] is None and row["paper_accuracy"] == 27.13


def _store(root: Path, task: str, method: str, accuracy: float) -> None:
    run = root / "smollm2-135m-instruct" / task / method
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(_result(task, method, accuracy)))


def test_collect_finds_runs_in_task_and_method_order(tmp_path: Path) -> None:
    for task, method in [("piqa", "cot"), ("arc_challenge", "cache_steering"), ("arc_challenge", "baseline"),
                         ("gsm8k", "cache_steering_cot")]:
        _store(tmp_path, task, method, 0.25)
    selection = tmp_path / "smollm2-135m-instruct" / "arc_challenge" / "cache_steering" / "selection" / "n100_k5_c2"
    selection.mkdir(parents=True)
    (selection / "results.json").write_text(json.dumps(_result("arc_challenge", "cache_steering", 0.9)))
    found = collect(tmp_path)
    assert [(r["task"], r["method"]) for r in found] == [
        ("gsm8k", "cache_steering_cot"), ("arc_challenge", "baseline"), ("arc_challenge", "cache_steering"),
        ("piqa", "cot")]  # the held-out selection run is not a result
    assert collect(tmp_path, model="another-model") == []


def _store_point(root: Path, method: str, point: str, config: dict, answers: list[str]) -> None:
    run = root / "smollm2-135m-instruct" / "arc_challenge" / method / "selection" / point
    run.mkdir(parents=True)
    result = {**_result("arc_challenge", method, 0.5), "n": len(answers), "mean_tokens": 10.0,
              "runs": [{"items_file": "items.jsonl"}],  # written before results recorded the degenerate share
              "config": {"n_pairs": 100, "n_demonstrations": 5, "c_values": None, "options": {}, **config}}
    del result["degenerate"]
    (run / "results.json").write_text(json.dumps(result))
    (run / "items.jsonl").write_text("".join(json.dumps({"index": i, "response": a}) + "\n"
                                             for i, a in enumerate(answers)))


def test_collect_grids_reads_both_coefficients_and_the_degenerate_share(tmp_path: Path) -> None:
    loop = "the answer is A so " * 20
    _store_point(tmp_path, "cache_steering", "n100_k5_c6", {"c_values": 6.0}, ["The answer is B.", loop])
    _store_point(tmp_path, "caa", "n100_k5_layer14_multiplier3", {"options": {"layer": 14, "multiplier": 3.0,
                                                                               "mode": "cached"}},
                 ["A", "B", "C", loop])
    (tmp_path / "smollm2-135m-instruct" / "arc_challenge" / "caa" / "selection" / "n100_k5_unfinished").mkdir()
    caa, steering = collect_grids(tmp_path)  # sorted by method; the unfinished point has no results.json
    assert (steering["coefficient_name"], steering["coefficient"], steering["layer"]) == ("c_values", 6.0, None)
    assert steering["degenerate"] == 0.5
    assert (caa["coefficient_name"], caa["coefficient"], caa["layer"], caa["mode"]) == ("multiplier", 3.0, 14,
                                                                                           "cached")
    assert caa["degenerate"] == 0.25
    assert collect_grids(tmp_path, model="another-model") == []


def test_reading_stored_results_never_rewrites_them(tmp_path: Path) -> None:
    _store_point(tmp_path, "cache_steering", "n100_k5_c6", {"c_values": 6.0}, ["A", "B"])
    items = next(tmp_path.rglob("items.jsonl"))
    damaged = items.read_text() + '{"index": 2, "resp'  # a last line cut off mid-write
    items.write_text(damaged)
    assert collect_grids(tmp_path)[0]["degenerate"] == 0.0  # the cut-off line is skipped...
    assert items.read_text() == damaged  # ...and the file is left as it was


def test_collect_grids_agrees_with_the_stored_selection_files() -> None:
    grids = collect_grids(RESULTS_DIR)
    stored = 0
    for path in RESULTS_DIR.glob("*/*/*/selection/selection.json"):
        selection = json.loads(path.read_text())
        for point in selection["grid"]:
            matches = [row for row in grids if (row["task"], row["method"]) == (selection["task"], selection["method"])
                       and row["coefficient"] == point.get("c_values", point.get("multiplier"))
                       and row["layer"] == point.get("layer")]
            assert len(matches) == 1 and matches[0]["accuracy"] == point["accuracy"]
            assert 0 <= matches[0]["degenerate"] <= 1
            stored += 1
    assert stored >= 40  # the stored table: 8 cache-steering rows x 3 coefficients, 4 CAA rows x 4 multipliers


def test_every_stored_loop_share_agrees_with_the_loop_measure() -> None:
    # a change to tasks.quality must be followed by scripts/rescore_loops.py, or the stored shares go stale
    checked = 0
    for path in RESULTS_DIR.rglob("results.json"):
        result = read_json(path)
        if "degenerate" in result:  # older results are measured whenever they are read
            shares = measured_loop_shares(result, path.parent)
            assert [run["degenerate"] for run in result["runs"]] == shares, path
            assert result["degenerate"] == pytest.approx(sum(shares) / len(shares)), path
            checked += 1
    assert checked >= 70
    summary = read_json(RESULTS_DIR / "smollm2-135m-instruct" / "style_transfer" / "summary.json")
    for row in summary["rows"]:
        answers = style_answers(RESULTS_DIR, summary["model"], row["steered_style"], row["c_values"])
        assert row["degenerate_share"] == degenerate_share(answers)
    piqa_caa = read_json(RESULTS_DIR / "smollm2-135m-instruct" / "piqa" / "caa" / "results.json")
    assert piqa_caa["degenerate"] == 1.0  # every answer "-$-$-$...": a loop without words


def test_the_results_command_prints_every_stored_run(capsys: pytest.CaptureFixture) -> None:
    assert main(["results", "--results-dir", str(RESULTS_DIR)]) == 0
    assert capsys.readouterr().out.strip() == comparison_table(collect(RESULTS_DIR))
