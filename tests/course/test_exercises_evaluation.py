"""Notebook 5's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import shutil

import pytest

import cachesteer_lite as cs
from cachesteer_lite.book import stored_run
from cachesteer_lite.course import evaluation
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.runs.results import collect

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def arc():
    """The stored ARC runs of the notebook: records by method, and every stored result."""
    return {method: stored_run("arc_challenge", method, MODEL) for method in ("baseline", "cot", "cache_steering")}


def test_accuracy(arc):
    cot, stored = arc["cot"], collect(model=MODEL)
    check = evaluation.check_accuracy
    reference = sum(r["correct"] for r in cot.records.values()) / len(cot.records)
    verdict = check(reference, cot.records, cot.result, runs=stored)
    assert verdict.correct and "75 of 300" in verdict.message and "results.json" in verdict.message
    assert "percentage" in check(100 * reference, cot.records, cot.result).message
    assert "number of correct records" in check(75, cot.records, cot.result).message
    other = check(arc["baseline"].result["accuracy"], cot.records, cot.result, runs=stored)
    assert not other.correct and "arc_challenge/baseline" in other.message


def test_fixed_items(arc):
    base, steered = arc["baseline"].records, arc["cache_steering"].records
    check = evaluation.check_fixed_items
    fixed = [i for i in base if steered[i]["correct"] and not base[i]["correct"]]
    verdict = check(fixed, base, steered)
    assert verdict.correct and verdict.message.startswith("30 items") and "extraction step" in verdict.message
    assert check(set(fixed), base, steered).correct
    broke = [i for i in base if base[i]["correct"] and not steered[i]["correct"]]
    assert "*broke*" in check(broke, base, steered).message
    assert "all the items steering got right" in check([i for i in base if steered[i]["correct"]], base,
                                                       steered).message
    assert "both directions" in check(fixed + broke, base, steered).message
    assert "missing" in check(fixed[:-3], base, steered).message


def test_live_row(smollm2, tmp_path, arc):
    """The checker on a small live run (4 questions stand for the exercise's 20; the slow test runs 20)."""
    model, tokenizer = smollm2
    config = cs.EvalConfig("csqa", "cot", limit=4, batch_size=4, max_new_tokens=2)
    row = cs.evaluate(model, tokenizer, config, tmp_path / "csqa_cot", progress=False)
    check = evaluation.check_live_row
    verdict = check(row, tmp_path / "csqa_cot", n=4)
    assert verdict.correct and "points wide" in verdict.message and "300 questions" in verdict.message, verdict
    assert "limit=20" in check(row, tmp_path / "csqa_cot").message
    assert "method 'cot'" in check({**row, "method": "baseline"}, tmp_path / "csqa_cot", n=4).message
    assert "stored results" in check(collect(model=MODEL)[0], tmp_path / "csqa_cot", n=4).message
    assert "does not exist" in check(row, tmp_path / "elsewhere", n=4).message
    assert "items.jsonl has" in check({**row, "accuracy": 0.123}, tmp_path / "csqa_cot", n=4).message
    shutil.copytree(tmp_path / "csqa_cot", tmp_path / "other")  # another run's items in the directory
    other = tmp_path / "other" / "items.jsonl"
    other.write_text(other.read_text().replace('"index": 0,', '"index": 7,'))
    assert "does not hold" in check(row, tmp_path / "other", n=4).message


@pytest.mark.slow
def test_live_row_of_the_exercise(smollm2, tmp_path):
    model, tokenizer = smollm2
    config = cs.EvalConfig("csqa", "cot", limit=20, batch_size=20, max_new_tokens=2)
    row = cs.evaluate(model, tokenizer, config, tmp_path, progress=False)
    verdict = evaluation.check_live_row(row, tmp_path)
    assert verdict.correct and "of 20 right" in verdict.message, verdict


@pytest.mark.parametrize("answer", [..., None, "forty", (1, 2), {"accuracy": 0.5}])
def test_blank_or_malformed_answers_get_a_message(answer, arc, tmp_path):
    cot = arc["cot"]
    for verdict in (evaluation.check_accuracy(answer, cot.records, cot.result),
                    evaluation.check_fixed_items(answer, arc["baseline"].records, arc["cache_steering"].records),
                    evaluation.check_live_row(answer, tmp_path)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
