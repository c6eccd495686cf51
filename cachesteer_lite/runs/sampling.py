"""The paper's sampling table, reproduced: the baseline and cache steering sampled with five seeds.

The paper samples each multiple-choice task five times (seeds 1234, 1235, 1237, 1240, 1244; SmolLM2 at temperature
0.6, top-p 0.9, top-k 50) and reports mean ± sd. The runner stores such a run under ``{method}/sampling/`` with one
items file per seed. :func:`sampling_summary` sets the two methods side by side seed by seed: each seed's accuracies
on the same items, the bias of steering (steered minus baseline, in points) with the exact McNemar test of that
seed's pair, the bias pooled over the seeds with a 95% bootstrap interval over the items (it carries the chance of
which questions were asked, which five seeds on the same questions cannot show), the greedy runs' accuracy on
the same items, and how much of each score the response gave by itself (:mod:`.answer_source`).
:func:`sampling_table` does it for every task with both sampled runs, beside the paper's means and standard
deviations.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer_source import AnswerSources, answer_sources
from .paper import paper_entry, paper_model_for
from .records import read_json, read_records
from .results import load_run, stored_run_folder
from .statistics import bootstrap_mean, paired_comparison

BASELINE, STEERING = "baseline", "cache_steering"
SAMPLED_TASKS = ("arc_challenge", "csqa")  # the tasks the book samples (the paper's sampling table also has PIQA)


@dataclass(frozen=True)
class SeedPair:
    """One seed: the sampled baseline and the sampled steered run on the same items."""

    seed: int
    n: int
    baseline_correct: int
    steered_correct: int
    only_baseline: int   # right unsteered, wrong steered
    only_steered: int    # wrong unsteered, right steered
    p_value: float       # exact McNemar test of the pair

    @property
    def bias(self) -> float:
        """Steered minus baseline accuracy, in points."""
        return 100 * (self.steered_correct - self.baseline_correct) / self.n


@dataclass(frozen=True)
class SamplingSummary:
    """A task's sampled baseline and cache steering, seed by seed, with the greedy runs on the same items."""

    task: str
    pairs: tuple[SeedPair, ...]
    baseline_words: float
    steered_words: float
    greedy_baseline: float | None  # accuracy % of the greedy run on the sampled items (None: no greedy run)
    greedy_steered: float | None
    pooled: dict[str, Any]         # the bias over all seeds: mean and 95% bootstrap interval over the items
    item_sd: float                 # the sample sd of the items' pooled gains (points): what sizes a pooled test
    baseline_sources: tuple[AnswerSources, ...]  # where each seed's answers came from (response or extraction)
    steered_sources: tuple[AnswerSources, ...]

    @property
    def baseline(self) -> list[float]:
        """The baseline's accuracy (%) at each seed."""
        return [100 * pair.baseline_correct / pair.n for pair in self.pairs]

    @property
    def steered(self) -> list[float]:
        """Cache steering's accuracy (%) at each seed."""
        return [100 * pair.steered_correct / pair.n for pair in self.pairs]

    @property
    def bias(self) -> list[float]:
        """Steered minus baseline accuracy (points) at each seed."""
        return [pair.bias for pair in self.pairs]


def response_alone(sources: tuple[AnswerSources, ...]) -> tuple[float, float, float]:
    """Over the seeds, the mean share (%) of responses that state an answer by themselves, the mean accuracy (%) when
    only that stated answer counts, and the same by an answer phrase alone (no bare opening letter): the part of a
    score the extraction step did not decide."""
    return (statistics.fmean(100 * s.stated / s.n for s in sources),
            statistics.fmean(100 * s.stated_correct / s.n for s in sources),
            statistics.fmean(100 * s.phrase_correct / s.n for s in sources))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (None for a single value), as the paper reports its runs."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def seed_records(run_dir: Path) -> tuple[dict[str, Any], dict[int, dict[int, dict]]]:
    """A finished sampling run's results and its records, by seed and then by item index."""
    result = read_json(run_dir / "results.json")
    if not result["config"].get("do_sample"):
        raise ValueError(f"{run_dir} holds a greedy run, not a sampling one")
    return result, {run["seed"]: read_records(run_dir / run["items_file"]) for run in result["runs"]}


def compare_seeds(baseline: dict[int, dict[int, dict]], steered: dict[int, dict[int, dict]]) -> tuple[SeedPair, ...]:
    """The two methods seed by seed (records by seed, then by item); both must have run the same seeds and items."""
    if set(baseline) != set(steered):
        raise ValueError(f"the runs sampled different seeds: {sorted(baseline)} and {sorted(steered)}")
    pairs = []
    for seed in sorted(baseline):
        paired = paired_comparison(baseline[seed], steered[seed])
        pairs.append(SeedPair(seed=seed, n=paired["n"], baseline_correct=paired["both"] + paired["only_first"],
                              steered_correct=paired["both"] + paired["only_second"],
                              only_baseline=paired["only_first"], only_steered=paired["only_second"],
                              p_value=paired["p_value"]))
    return tuple(pairs)


def item_gains(baseline: dict[int, dict[int, dict]], steered: dict[int, dict[int, dict]]) -> list[float]:
    """For each item, steered minus baseline correct answers over all seeds, in points (100 x the share of seeds):
    the per-item differences whose mean is the mean bias."""
    seeds, items = sorted(baseline), sorted(next(iter(baseline.values())))
    return [100 * sum(bool(steered[s][i]["correct"]) - bool(baseline[s][i]["correct"]) for s in seeds) / len(seeds)
            for i in items]


def greedy_accuracy(run_dir: Path, items: set[int]) -> float | None:
    """The accuracy (%) of the greedy run in ``run_dir`` on ``items`` (item indices), or None when there is no
    finished run or it lacks any of them."""
    if not (run_dir / "results.json").is_file():
        return None
    records = load_run(run_dir).records
    if not items <= set(records):
        return None
    return 100 * sum(bool(records[i]["correct"]) for i in items) / len(items)


def sampling_summary(task: str, model: str, results_dir: Path | None = None) -> SamplingSummary | None:
    """The sampled baseline and cache steering of ``model`` on ``task`` (default: the book's stored runs), seed by
    seed; None while either run is missing."""
    dirs = [stored_run_folder(task, method, model, results_dir) / "sampling" for method in (BASELINE, STEERING)]
    if not all((folder / "results.json").is_file() for folder in dirs):
        return None
    (baseline_result, baseline), (steered_result, steered) = (seed_records(folder) for folder in dirs)
    pairs = compare_seeds(baseline, steered)
    items, gains = set(next(iter(baseline.values()))), item_gains(baseline, steered)
    return SamplingSummary(task=task, pairs=pairs, baseline_words=baseline_result["mean_words"],
                           steered_words=steered_result["mean_words"],
                           greedy_baseline=greedy_accuracy(dirs[0].parent, items),
                           greedy_steered=greedy_accuracy(dirs[1].parent, items),
                           pooled=bootstrap_mean(gains), item_sd=statistics.stdev(gains) if len(gains) > 1 else 0.0,
                           baseline_sources=tuple(answer_sources(baseline[seed]) for seed in sorted(baseline)),
                           steered_sources=tuple(answer_sources(steered[seed]) for seed in sorted(steered)))


def _spread(values: list[float], signed: bool = False) -> str:
    """Mean ± sd of ``values`` as the paper prints them (two decimals; the mean alone for one value)."""
    mean, sd = mean_sd(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if sd is None else f"{text} ± {sd:.2f}"


def paper_sampled(task: str, method: str, paper_model: str | None) -> tuple[float, float] | None:
    """The paper's sampled mean and sd (%) of ``method`` on ``task`` for ``paper_model``, or None where it has none."""
    entry = None if paper_model is None else paper_entry(task, method, paper_model, sampling=True)
    return None if entry is None or entry["accuracy_mean"] is None else (entry["accuracy_mean"], entry["accuracy_sd"])


def sampling_table(model: str, tasks: tuple[str, ...] = SAMPLED_TASKS, results_dir: Path | None = None) -> str:
    """A Markdown table of :func:`sampling_summary` for each task, beside the paper's sampling table (a line says
    which tasks have no sampled runs yet)."""
    paper_model = paper_model_for(model)
    lines = [f"| task | items × seeds | baseline % | paper baseline % ({paper_model}) | cache steering % | paper "
             "cache steering % | steering − baseline, points per seed | mean ± sd | paper | pooled over the seeds "
             "[95% bootstrap interval over the items] | McNemar p per seed | greedy on the same items: baseline / "
             "steering % | stated by the response: baseline / steering % | right by the response alone (by an "
             "answer phrase): baseline / steering % | words: baseline / steering |", "|---" * 15 + "|"]
    missing = []
    for task in tasks:
        summary = sampling_summary(task, model, results_dir)
        if summary is None:
            missing.append(task)
            continue
        paper_baseline, paper_steered = (paper_sampled(task, method, paper_model) for method in (BASELINE, STEERING))
        paper_bias = (f"{paper_steered[0] - paper_baseline[0]:+.2f}" if paper_baseline and paper_steered else "–")
        greedy = " / ".join("–" if value is None else f"{value:.0f}"
                            for value in (summary.greedy_baseline, summary.greedy_steered))
        (base_stated, base_alone, base_phrase), (steered_stated, steered_alone, steered_phrase) = (
            response_alone(sources) for sources in (summary.baseline_sources, summary.steered_sources))
        lines.append(
            f"| {task} | {summary.pairs[0].n} × {len(summary.pairs)} | {_spread(summary.baseline)} | "
            f"{_reported(paper_baseline)} | {_spread(summary.steered)} | {_reported(paper_steered)} | "
            f"{', '.join(f'{bias:+.0f}' for bias in summary.bias)} | {_spread(summary.bias, signed=True)} | "
            f"{paper_bias} | {summary.pooled['mean']:+.2f} [{summary.pooled['ci95'][0]:+.1f}, "
            f"{summary.pooled['ci95'][1]:+.1f}] | "
            f"{', '.join(f'{pair.p_value:.2f}' for pair in summary.pairs)} | {greedy} | "
            f"{base_stated:.0f} / {steered_stated:.0f} | {base_alone:.1f} ({base_phrase:.1f}) / {steered_alone:.1f} "
            f"({steered_phrase:.1f}) | "
            f"{summary.baseline_words:.0f} / {summary.steered_words:.0f} |")
    if missing:
        lines.append(f"\nNo stored sampling runs of both methods yet for: {', '.join(missing)}.")
    return "\n".join(lines)


def _reported(entry: tuple[float, float] | None) -> str:
    """The paper's mean ± sd, or a dash where it reports none."""
    return "–" if entry is None else f"{entry[0]:.2f} ± {entry[1]:.2f}"
