"""What every finding shares: the row, the stored runs and the paper's numbers it reads, and the rules of its
verdicts (a paired difference counts only at p < 0.05).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ..runs import budget
from ..runs.paper import load_paper_results, paper_entry
from ..runs.results import StoredRun, degenerate, stored_run, stored_run_folder
from ..runs.statistics import paired_comparison, paired_sample_size

STORED_MODEL = "smollm2-135m-instruct"  # the model of the book's stored runs
PAPER_MODEL = "SmolLM2-360M-Instruct"   # the paper's nearest model
CHOICE_TASKS = ("arc_challenge", "csqa", "piqa")  # where the paper has SmolLM2 numbers
GREEDY_QUESTIONS = 300  # the evaluation questions of each stored greedy run
SIGNIFICANT = 0.05


class Finding(NamedTuple):
    """One row of the findings box."""

    claim: str
    paper: str
    ours: str
    verdict: str
    to_settle: str


def stored(task: str, method: str) -> StoredRun:
    """A stored 300-question run of the embedded model (it must exist: the book ships them)."""
    run = stored_run(task, method, STORED_MODEL)
    if run is None:
        raise FileNotFoundError(f"no stored {method} run on {task} in {stored_run_folder(task, method, STORED_MODEL)}")
    return run


def loop_share(task: str, method: str) -> float:
    """The share (%) of a stored run's answers that loop (:func:`runs.results.degenerate`)."""
    return 100 * degenerate(stored(task, method).result, stored_run_folder(task, method, STORED_MODEL))


def paper_accuracy(task: str, method: str) -> float | None:
    """The paper's SmolLM2-360M greedy accuracy (%) for ``method`` on ``task``, None where it has none."""
    entry = paper_entry(task, method, PAPER_MODEL)
    return None if entry is None else entry.get("accuracy")


def paper_gain(task: str, method: str, counterpart: str) -> float | None:
    """The paper's SmolLM2-360M difference in points, ``method`` minus ``counterpart``, None where it lacks one."""
    ours, theirs = paper_accuracy(task, method), paper_accuracy(task, counterpart)
    return None if ours is None or theirs is None else ours - theirs


def paired(task: str, method: str, counterpart: str) -> dict[str, Any]:
    """``method`` against ``counterpart`` on the same stored items, with the difference in points."""
    comparison = paired_comparison(stored(task, method).records, stored(task, counterpart).records)
    comparison["difference"] = 100 * (comparison["only_first"] - comparison["only_second"]) / comparison["n"]
    return comparison


def claim_verdict(better: Sequence[str], worse: Sequence[str], otherwise: str) -> str:
    """'Contradicted' on the tasks that go against the claim (and 'confirmed' on those that go with it), else
    'Confirmed' on those, else ``otherwise``: the rule of every accuracy claim."""
    if worse:
        return f"**Contradicted** on {', '.join(worse)}" + (f", confirmed on {', '.join(better)}" if better else "")
    return f"**Confirmed** on {', '.join(better)}" if better else otherwise


def accuracy_verdict(comparisons: dict[str, dict[str, Any]]) -> str:
    """:func:`claim_verdict` by the paired tests at p < 0.05 on each task."""
    better = [task for task, c in comparisons.items() if c["p_value"] < SIGNIFICANT and c["difference"] > 0]
    worse = [task for task, c in comparisons.items() if c["p_value"] < SIGNIFICANT and c["difference"] < 0]
    smallest = min(c["p_value"] for c in comparisons.values())
    otherwise = f"**Not confirmed**: no task differs beyond chance (smallest p = {smallest:.2f})"
    return claim_verdict(better, worse, otherwise)


def questions_needed(comparisons: dict[str, dict[str, Any]], method: str, counterpart: str) -> str:
    """For each task: the questions a paired test needs to see the paper's gain at 80% power, given our share
    of items that only one of the two methods got right, against the size of the whole split."""
    parts = []
    for task, comparison in comparisons.items():
        points = paper_gain(task, method, counterpart)
        if points is None:
            continue
        gain = points / 100
        discordant = (comparison["only_first"] + comparison["only_second"]) / comparison["n"]
        split = load_paper_results()["n"][task]
        if gain == 0 or abs(gain) > discordant:
            parts.append(f"{task}: the paper's difference is {100 * gain:+.2f} points, not testable")
            continue
        parts.append(f"{task} {100 * gain:+.2f} points: {beside_split(paired_sample_size(discordant, gain), split)}")
    return "; ".join(parts)


def beside_split(needed: int, split: int) -> str:
    """A test's number of questions beside the task's whole split; over ten splits is out of reach."""
    return f"{needed:,} questions ({needed / split:.1f}x the split of {split:,})" + (
        ": out of reach" if needed > 10 * split else "")


def gpu_estimate(model: str = PAPER_MODEL, gpu: str = "T4 (16 GB)") -> str:
    """What rerunning the paper's table for ``model`` takes on Colab's free GPU, from :mod:`runs.budget`."""
    architecture, card = budget.ARCHITECTURES[model], budget.GPUS[gpu]
    batch = budget.largest_batch(architecture, card)
    return (f"about {budget.table_hours(architecture, card, batch):.1f} h for its table on a {gpu.split()[0]} "
            f"(estimated, the Colab page; `scripts/reproduce_table.sh --model HuggingFaceTB/{model} --preset paper "
            "all`).")


def words(mean: float) -> str:
    """'1 word', '32 words': a mean length in words, rounded."""
    return f"{mean:.0f} word" + ("" if round(mean) == 1 else "s")
