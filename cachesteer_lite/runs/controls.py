"""The paper's control, measured at scale: what the offset token alone does to the unsteered model.

Cache steering appends one offset token to the prompt and edits the cache before it. The paper's control appends
the token and adds nothing (c = 0), and reports that the answer stays the same, so that any change under steering
is the edit's. The method ``offset_control`` is that control; :func:`offset_effect` sets its stored run beside the
baseline's, item by item: how many responses and final answers the token alone changed, the accuracy of both with
the exact McNemar test, and how often each states an answer itself (:mod:`answer_source`). :func:`steering_changes`
puts the edit's own share beside it: how many answers cache steering changes against the baseline and against the
control (the same prompt and token, no edit).
"""

from __future__ import annotations

from dataclasses import dataclass

from .answer_source import answer_sources
from .results import StoredRun, stored_run
from .statistics import paired_comparison

CONTROL, REFERENCE, STEERING = "offset_control", "baseline", "cache_steering"


@dataclass(frozen=True)
class OffsetEffect:
    """The offset token alone against the plain prompt, on the same items of one task."""

    task: str
    n: int
    responses_changed: int    # the response text differs
    answers_changed: int      # the scored option differs
    baseline_correct: int
    control_correct: int
    only_baseline: int        # right without the token, wrong with it
    only_control: int         # wrong without the token, right with it
    p_value: float            # exact McNemar test of the two accuracies
    baseline_stated: int      # responses that state an option themselves
    control_stated: int
    baseline_words: float
    control_words: float


def offset_effect(task: str, model: str) -> OffsetEffect | None:
    """The stored offset control of ``model`` on ``task`` against its stored baseline, or None while either run
    is missing."""
    control, baseline = stored_run(task, CONTROL, model), stored_run(task, REFERENCE, model)
    return None if control is None or baseline is None else compare_offset(task, baseline, control)


def compare_offset(task: str, baseline: StoredRun, control: StoredRun) -> OffsetEffect:
    """The control against the baseline, item by item; both must cover the same items (records by item index)."""
    paired = paired_comparison(baseline.records, control.records)
    pairs = [(baseline.records[i], control.records[i]) for i in baseline.records]
    return OffsetEffect(
        task=task, n=paired["n"],
        responses_changed=sum(plain["response"] != offset["response"] for plain, offset in pairs),
        answers_changed=sum(plain["prediction"] != offset["prediction"] for plain, offset in pairs),
        baseline_correct=paired["both"] + paired["only_first"], control_correct=paired["both"] + paired["only_second"],
        only_baseline=paired["only_first"], only_control=paired["only_second"], p_value=paired["p_value"],
        baseline_stated=answer_sources(baseline.records).stated, control_stated=answer_sources(control.records).stated,
        baseline_words=baseline.result["mean_words"], control_words=control.result["mean_words"],
    )


def steering_changes(task: str, model: str) -> tuple[int, int] | None:
    """How many scored answers the stored cache-steering run of ``task`` changes, against the baseline and against
    the offset control; None while any of the three runs is missing."""
    runs = [stored_run(task, method, model) for method in (STEERING, REFERENCE, CONTROL)]
    if any(run is None for run in runs):
        return None
    steered, baseline, control = (run.records for run in runs if run is not None)
    return (sum(steered[i]["prediction"] != baseline[i]["prediction"] for i in steered),
            sum(steered[i]["prediction"] != control[i]["prediction"] for i in steered))


def offset_table(model: str, tasks: tuple[str, ...] = ("arc_challenge", "csqa", "piqa")) -> str:
    """A Markdown table of :func:`offset_effect` for every task with both stored runs (a line says which lack one)."""
    lines = ["| task | n | responses changed | answers changed | accuracy without / with the token % | right only "
             "without / only with | McNemar p | responses that state an answer, without / with % | words, without "
             "/ with | answers cache steering changes, vs baseline / vs control |", "|---" * 10 + "|"]
    missing = []
    for task in tasks:
        effect = offset_effect(task, model)
        if effect is None:
            missing.append(task)
            continue
        n = effect.n
        lines.append(f"| {task} | {n} | {effect.responses_changed} ({100 * effect.responses_changed / n:.0f}%) | "
                     f"{effect.answers_changed} ({100 * effect.answers_changed / n:.0f}%) | "
                     f"{100 * effect.baseline_correct / n:.1f} / {100 * effect.control_correct / n:.1f} | "
                     f"{effect.only_baseline} / {effect.only_control} | {effect.p_value:.2f} | "
                     f"{100 * effect.baseline_stated / n:.0f} / {100 * effect.control_stated / n:.0f} | "
                     f"{effect.baseline_words:.0f} / {effect.control_words:.0f} | "
                     f"{_pair(steering_changes(task, model))} |")
    if missing:
        lines.append(f"\nNo stored offset control (or baseline) yet for: {', '.join(missing)}.")
    return "\n".join(lines)


def _pair(counts: tuple[int, int] | None) -> str:
    return "–" if counts is None else f"{counts[0]} / {counts[1]}"
