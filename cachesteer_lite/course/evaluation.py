"""Checkers for notebook 5, "Evaluation: does one cache edit make a small model reason better?"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..runs.records import read_json, read_records
from ..runs.statistics import wilson_interval
from ..tasks.data import load_items
from ..tasks.scoring import match_choice
from .feedback import Feedback, checker, close, correct, wrong

Records = Mapping[int, Mapping[str, Any]]


def accuracy(records: Records) -> float:
    """The share of records marked correct."""
    return sum(bool(r["correct"]) for r in records.values()) / len(records)


@checker("answer_1 = the accuracy of the stored ARC-Challenge CoT run, computed from its records (a fraction "
         "between 0 and 1)")
def check_accuracy(answer: float, records: Records, result: Mapping[str, Any],
                   runs: Sequence[Mapping[str, Any]] = ()) -> Feedback:
    """Exercise 1: correct records over all records. ``result`` is the run's results.json; ``runs`` the other stored
    results, to name the run an answer belongs to when it is another one's accuracy. Slips named: a percentage, the
    count of correct records, another run."""
    expected = accuracy(records)
    n_correct, n = round(expected * len(records)), len(records)
    value = float(answer)
    if close(value, expected, 1e-9):
        agrees = close(float(result["accuracy"]), expected, 1e-12)
        return correct(f"{n_correct} of {n} = {expected:.4g}, "
                       + ("exactly results.json's accuracy: the summary is computed from these records" if agrees
                          else f"but results.json says {result['accuracy']:.4g}: the records changed after it"))
    if close(value, 100 * expected, 1e-6):
        return wrong(f"{value:g} is a percentage: give the fraction, between 0 and 1")
    if close(value, n_correct, 1e-9):
        return wrong(f"{value:g} is the number of correct records: divide by the number of records ({n})")
    for run in runs:
        if (run.get("task"), run.get("method")) != (result.get("task"), result.get("method")) \
                and close(value, float(run["accuracy"]), 1e-9):
            return wrong(f"that is the accuracy of the stored {run['task']}/{run['method']} run: read the records "
                         "of arc_challenge/cot")
    return wrong("count the records whose 'correct' is true and divide by the number of records: "
                 "sum(r['correct'] for r in records.values()) / len(records)")


def fixed_items(baseline: Records, steered: Records) -> list[int]:
    """The items the steered run got right and the baseline wrong, in index order."""
    return sorted(i for i in baseline if steered[i]["correct"] and not baseline[i]["correct"])


def decided_by_extraction(record: Mapping[str, Any]) -> bool:
    """Whether the extraction step, not the answer, gave the letter: the response alone (before the suffix "So the
    correct choice is") names no letter or another one than the record's prediction."""
    return match_choice(record["response"])[0] != record["prediction"]


def as_ids(answer: Iterable[Any]) -> list[int]:
    """Item ids as ints; refuses a string (whose characters would pass for ids)."""
    if isinstance(answer, (str, bytes)) or isinstance(answer, Mapping):
        raise TypeError(f"a {type(answer).__name__} is not a list of item ids")
    return [int(i) for i in answer]


@checker("answer_2 = the list of ARC item ids (the records' keys) that cache steering got right and the baseline "
         "got wrong")
def check_fixed_items(answer: Iterable[int], baseline: Records, steered: Records) -> Feedback:
    """Exercise 2: the items steering fixed, and how many of them the (unsteered) extraction step decided. Slips
    named: the other direction (the items it broke), every item steering got right, both directions together."""
    ids = as_ids(answer)
    given, expected = set(ids), set(fixed_items(baseline, steered))
    broken = {i for i in baseline if baseline[i]["correct"] and not steered[i]["correct"]}
    if given == expected:
        repeated = " (each once: your list repeats some)" if len(ids) != len(given) else ""
        decided = [i for i in sorted(expected) if decided_by_extraction(steered[i])]
        silent = sum(match_choice(steered[i]["response"])[0] == "[invalid]" for i in decided)
        rules = Counter(steered[i]["extraction"] for i in expected).most_common()
        return correct(
            f"{len(expected)} items{repeated}; steering broke {len(broken)} others. For {len(decided)} of the "
            f"{len(expected)} the letter came from the extraction step: the steered answer alone names no letter in "
            f"{silent} and another letter in {len(decided) - silent}. The records' `extraction` field: "
            + ", ".join(f"{count} '{rule}'" for rule, count in rules))
    if given == broken and given:
        return wrong("these are the items steering *broke* (baseline right, steering wrong): swap the two tests")
    if given == {i for i in steered if steered[i]["correct"]}:
        return wrong("these are all the items steering got right, the ones the baseline got right too included: "
                     "keep those the baseline got wrong")
    if given == expected | broken:
        return wrong("this is both directions (the items the two runs disagree on): keep only those steering got "
                     "right")
    unknown = given - set(baseline)
    if unknown:
        return wrong(f"{len(unknown)} of your ids are not items of these runs: use the records' keys (their index)")
    return wrong(f"{len(given & expected)} of your {len(given)} ids are right and {len(expected - given)} are missing: "
                 "keep the items i with steered[i]['correct'] and not baseline[i]['correct']")


@checker("answer_3 = the dict that cs.evaluate returned for CommonsenseQA with method 'cot' on 20 questions")
def check_live_row(answer: Mapping[str, Any], run_dir: str | Path, *, task: str = "csqa", method: str = "cot",
                   n: int = 20) -> Feedback:
    """Exercise 3: a run the learner made, checked against its own run directory without rerunning it: the task,
    method and items, the accuracy recounted from ``items.jsonl``, the interval recomputed, ``results.json`` the same.
    Slips named: a stored 300-question row, the wrong task or method, another number of questions."""
    if not isinstance(answer, Mapping) or "accuracy" not in answer:
        return wrong("give the dict that cs.evaluate returns (it has 'task', 'method', 'n', 'accuracy', 'ci95', ...)")
    if "run_dir" in answer:
        return wrong(f"this row comes from the stored results ({answer.get('n')} questions): run cs.evaluate yourself "
                     f"with EvalConfig('{task}', '{method}', limit={n}, ...)")
    if (answer.get("task"), answer.get("method")) != (task, method):
        return wrong(f"this is a {answer.get('task')}/{answer.get('method')} run: the exercise asks for task "
                     f"'{task}' with method '{method}'")
    if answer.get("n") != n:
        return wrong(f"this run has {answer.get('n')} questions: pass limit={n} to EvalConfig")
    config = answer["config"]
    items_path = Path(run_dir) / answer["runs"][0]["items_file"]
    if not items_path.is_file():
        return wrong(f"{items_path} does not exist: pass the run directory you gave cs.evaluate")
    records = read_records(items_path)
    first = [item.index for item in load_items(task, config["split"], n, config["start"])]
    if sorted(records) != first:
        return wrong(f"{items_path} does not hold the {n} questions of this row: pass the run directory you gave "
                     "cs.evaluate (a fresh one per run)")
    k = sum(bool(records[i]["correct"]) for i in first)
    low, high = wilson_interval(k, n)
    stored = read_json(Path(run_dir) / "results.json")
    if not (close(answer["accuracy"], k / n, 1e-12) and close(stored["accuracy"], k / n, 1e-12)):
        return wrong(f"the row says {answer['accuracy']:.3g} but its items.jsonl has {k} of {n} right: pass the "
                     "row and the directory of the same run")
    if not all(close(a, b, 1e-9) for a, b in zip(answer["ci95"], (low, high), strict=False)):
        return wrong("the row's ci95 is not the Wilson interval of its records: was the row edited?")
    wide = wilson_interval(round(k / n * 300), 300)
    return correct(f"{k} of {n} right = {k / n:.0%}, 95% interval [{low:.0%}, {high:.0%}]: {100 * (high - low):.0f} "
                   f"points wide (at most {config['max_new_tokens']} new tokens). The same accuracy on 300 questions "
                   f"would give an interval {100 * (wide[1] - wide[0]):.0f} points wide: the width shrinks like "
                   "1/sqrt(n)")
