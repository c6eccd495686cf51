"""Who chose each multiple-choice answer: the response, or the extraction step (recounted from stored records)."""

from __future__ import annotations

import re

import pytest

from cachesteer_lite.runs.answer_source import answer_sources, source_table, stated_answer
from cachesteer_lite.runs.results import collect, load_run
from cachesteer_lite.tasks.scoring import normalise_choice_text

MODEL = "smollm2-135m-instruct"


def _record(response: str, gold: str, prediction: str) -> dict:
    return {"response": response, "gold": gold, "prediction": prediction, "correct": prediction == gold}


def test_each_kind_of_answer_is_counted_where_it_belongs() -> None:
    records = dict(enumerate([
        _record("The correct answer is B.", "B", "B"),     # stated the gold answer, kept
        _record("The correct answer is A.", "B", "B"),     # stated a wrong one, the continuation made it right
        _record("The correct answer is B.", "B", "C"),     # stated the gold one, the continuation made it wrong
        _record("The correct answer is C.", "B", "D"),     # wrong, then another wrong one
        _record("The cell divides. The cell divides.", "B", "B"),  # no answer: the extraction step's pick
        _record("The cell divides.", "B", "A"),
    ]))
    sources = answer_sources(records)
    assert (sources.n, sources.correct, sources.stated, sources.stated_correct) == (6, 3, 4, 2)
    assert (sources.overridden_to_gold, sources.overridden_from_gold, sources.overridden_other) == (1, 1, 1)
    assert (sources.correct_unstated, sources.from_extraction) == (1, 2)
    assert (sources.opening_only, sources.phrase_correct) == (0, sources.stated_correct)
    assert stated_answer("The cell divides.") is None


def test_an_opening_letter_is_stated_but_set_apart_from_an_answer_phrase() -> None:
    records = dict(enumerate([
        _record("A: library\nB: department store", "A", "A"),  # the options copied out: reads as "A"
        _record("A: library. The answer is B.", "B", "B"),       # a phrase wins over the opening letter
        _record("B: because it rains", "A", "A"),
    ]))
    sources = answer_sources(records)
    assert [stated_answer(r["response"]) for r in records.values()] == ["A", "B", "B"]
    assert (sources.stated, sources.opening_only, sources.opening_only_correct) == (3, 2, 1)
    assert (sources.stated_correct, sources.phrase_correct, sources.overridden_to_gold) == (2, 1, 1)


@pytest.mark.parametrize("run", [r for r in collect(model=MODEL) if r["task"] != "gsm8k"],
                         ids=lambda r: f"{r['task']}-{r['method']}")
def test_the_counts_add_up_to_each_stored_runs_accuracy(run: dict) -> None:
    """Right = stated right and kept + overridden to gold + unstated but right, on every stored run."""
    records = load_run(run["run_dir"]).records
    sources = answer_sources(records)
    assert sources.n == run["n"] and sources.correct == round(run["accuracy"] * run["n"])
    kept = sources.stated_correct - sources.overridden_from_gold
    assert sources.correct == kept + sources.overridden_to_gold + sources.correct_unstated
    stated_right = sum(stated_answer(r["response"]) == r["gold"] for r in records.values())
    assert stated_right == sources.stated_correct
    # An opening letter alone: the response states an answer, and none once its opening letters are cut off.
    openings = [r for r in records.values() if stated_answer(r["response"]) is not None
                and stated_answer(re.sub(r"^(?:[A-E]\s*:\s*)+", "", normalise_choice_text(r["response"]))) is None]
    assert sources.opening_only == len(openings)
    assert sources.opening_only_correct == sum(stated_answer(r["response"]) == r["gold"] for r in openings)


def test_the_table_has_a_row_per_stored_multiple_choice_run() -> None:
    rows = source_table().splitlines()[2:]
    assert len(rows) == sum(r["task"] != "gsm8k" for r in collect(model=MODEL)) == 18  # 15 + 3 offset controls
    caa_arc = next(row for row in rows if row.startswith("| arc_challenge | caa |"))
    assert "| 27.3 |" in caa_arc  # the stored accuracy, by the paper's protocol
