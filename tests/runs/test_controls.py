"""The paper's offset-token control at scale: the paired comparison with the baseline, from stored records."""

from __future__ import annotations

import pytest

from cachesteer_lite.runs.controls import (
    CONTROL,
    REFERENCE,
    STEERING,
    compare_offset,
    offset_effect,
    offset_table,
    steering_changes,
)
from cachesteer_lite.runs.results import StoredRun, stored_run

MODEL = "smollm2-135m-instruct"
TASKS = ("arc_challenge", "csqa", "piqa")


def _run(rows: list[tuple[str, str, str]]) -> StoredRun:
    """A run from (response, prediction, gold) rows."""
    records = {i: {"response": response, "prediction": prediction, "gold": gold, "correct": prediction == gold}
               for i, (response, prediction, gold) in enumerate(rows)}
    return StoredRun({"mean_words": 4.0}, records)


def test_each_change_is_counted_where_it_belongs() -> None:
    baseline = _run([("The answer is A.", "A", "A"), ("The answer is B.", "B", "A"), ("The answer is C.", "C", "C"),
                     ("No idea.", "D", "A")])
    control = _run([("The answer is A.", "A", "A"), ("The answer is A.", "A", "A"), ("Hmm. The answer is D.", "D", "C"),
                    ("No idea at all.", "D", "A")])
    effect = compare_offset("arc_challenge", baseline, control)
    assert (effect.n, effect.responses_changed, effect.answers_changed) == (4, 3, 2)
    assert (effect.baseline_correct, effect.control_correct) == (2, 2)
    assert (effect.only_baseline, effect.only_control, effect.p_value) == (1, 1, 1.0)
    assert (effect.baseline_stated, effect.control_stated) == (3, 3)


def test_runs_of_different_items_are_refused() -> None:
    with pytest.raises(ValueError, match="different items"):
        compare_offset("piqa", _run([("A", "A", "A")]), _run([("A", "A", "A"), ("B", "B", "A")]))


@pytest.mark.parametrize("task", TASKS)
def test_the_stored_control_is_recounted_from_its_records(task: str) -> None:
    control, baseline = stored_run(task, CONTROL, MODEL), stored_run(task, REFERENCE, MODEL)
    assert control is not None and baseline is not None, f"the book ships the offset control and baseline of {task}"
    effect = offset_effect(task, MODEL)
    assert effect is not None and effect.n == len(baseline.records) == len(control.records) == 300
    assert effect.control_correct == round(control.result["accuracy"] * 300)
    assert effect.baseline_correct == round(baseline.result["accuracy"] * 300)
    changed = [i for i in baseline.records if baseline.records[i]["response"] != control.records[i]["response"]]
    assert effect.responses_changed == len(changed)
    steered = stored_run(task, STEERING, MODEL).records
    against_control = sum(steered[i]["prediction"] != control.records[i]["prediction"] for i in steered)
    assert steering_changes(task, MODEL)[1] == against_control
    row = next(line for line in offset_table(MODEL).splitlines() if line.startswith(f"| {task} |"))
    assert f"{100 * effect.baseline_correct / 300:.1f} / {100 * effect.control_correct / 300:.1f}" in row
    assert row.endswith(f"| {steering_changes(task, MODEL)[0]} / {against_control} |")
