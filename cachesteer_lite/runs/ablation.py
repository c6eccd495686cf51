"""The paper's ablations of cache steering, on held-out questions: one setting varied at a time around a base point.

The paper ablates the number of contrastive pairs, of demonstrations, ``c_values`` and ``c_keys`` on ARC-Challenge
(Llama-3.2-1B, on the test set; paper-reference section 3.2). Here every point answers the same held-out items
(:func:`selection.held_out_items`: ARC's validation split), never the evaluation set, and is a resumable run under
``run_dir/{point}`` like a selection grid's. :func:`ablation_rows` reads the finished points back with both
accuracies (the paper's protocol, and the response alone: :mod:`answer_source`), length, loops and the share of
responses that state an answer, so that a point where the extraction step carries the score shows as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .answer_source import answer_sources
from .config import EvalConfig
from .paper import load_paper_results, paper_ablation
from .records import read_json
from .results import degenerate, load_run, stored_run_folder
from .runner import evaluate
from .selection import apply_point, held_out_items, point_name
from .statistics import paired_comparison

# The base point: our held-out choice for ARC cache steering (100 pairs of 5 demonstrations, c_values 6), c_keys 0.
ABLATION_BASE: dict[str, float] = {"n_pairs": 100, "n_demonstrations": 5, "c_values": 6.0, "c_keys": 0.0}
# The settings varied, one at a time (the paper's ranges, thinned to what a CPU affords: issue 19, item 4).
ABLATION_VALUES: dict[str, tuple[float, ...]] = {
    "n_pairs": (25, 50, 100),
    "n_demonstrations": (1, 3, 5),
    "c_keys": (0.0, 0.1, 0.4),
    "c_values": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0),  # 0: the offset token alone (the paper's control)
}
ABLATION_FOLDER = "ablation"  # under a method's stored run: {task}/{method}/ablation/{point}


def ablation_points(base: Mapping[str, float] = ABLATION_BASE,
                    values: Mapping[str, Sequence[float]] = ABLATION_VALUES) -> list[dict[str, float]]:
    """Every point of the ablation, the base first and then each setting's other values, without repeats."""
    unknown = sorted(set(values) - set(base))
    if unknown:
        raise ValueError(f"no base value for {', '.join(unknown)}: the base point must set every varied setting")
    points = [check_point(base)]
    for name, grid in values.items():
        for value in grid:
            point = {**base, name: value}
            if point not in points:
                points.append(check_point(point))
    return points


def check_point(point: Mapping[str, float]) -> dict[str, float]:
    """``point``, refused when it has at least as many demonstrations as pairs (a pair's demonstrations come from
    the other pairs' traces)."""
    if point["n_demonstrations"] >= point["n_pairs"]:
        raise ValueError(f"point {dict(point)}: each pair needs more pairs than demonstrations")
    return dict(point)


def run_ablation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig,
                 run_dir: str | Path, *, limit: int, points: Sequence[Mapping[str, float]] | None = None,
                 memo: dict | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Answer ``limit`` held-out items at every point (default :func:`ablation_points`), each a resumable run
    under ``run_dir/{point_name}``, and return :func:`ablation_rows` of them. A point with at least as many
    demonstrations as pairs is refused before anything runs."""
    points = ablation_points() if points is None else [check_point(point) for point in points]
    split, start = held_out_items(config.task, max(int(point["n_pairs"]) for point in points))
    memo = memo if memo is not None else {}
    for point in points:
        settings = _integral(point)
        evaluate(model, tokenizer, replace(apply_point(config, settings), split=split, start=start, limit=limit),
                 Path(run_dir) / point_name(settings), memo=memo, progress=progress)
    return ablation_rows(run_dir)


def ablation_rows(run_dir: str | Path, base: Mapping[str, float] = ABLATION_BASE) -> list[dict[str, Any]]:
    """The finished points under ``run_dir``: their settings, which setting differs from ``base`` (``varied``;
    None for the base point), accuracy by the protocol with its interval, accuracy by the response alone (and by an
    answer phrase alone, without bare opening letters), the share of responses that state an answer, mean words and
    the share of looping answers. Once the base point is finished, every other point also carries its paired
    comparison with it on the same items: ``gained`` (right only here), ``lost`` (right only at the base) and the
    exact McNemar ``p_value``."""
    rows, records = [], {}
    for path in sorted(Path(run_dir).glob("*/results.json")):
        result = read_json(path)
        settings = {name: result["config"][name] for name in base}
        varied = [name for name in base if settings[name] != base[name]]
        records[path.parent] = load_run(path.parent).records
        sources = answer_sources(records[path.parent])
        rows.append({**settings, "varied": varied[0] if len(varied) == 1 else None if not varied else "several",
                     "n": result["n"], "accuracy": result["accuracy"], "ci95": result["ci95"],
                     "response_accuracy": sources.stated_correct / sources.n, "stated": sources.stated / sources.n,
                     "phrase_accuracy": sources.phrase_correct / sources.n,
                     "mean_words": result["mean_words"], "degenerate": degenerate(result, path.parent),
                     "run_dir": str(path.parent)})
    base_dir = next((Path(row["run_dir"]) for row in rows if row["varied"] is None), None)
    for row in rows:
        if base_dir is not None and row["varied"] is not None:
            paired = paired_comparison(records[Path(row["run_dir"])], records[base_dir])
            row.update(gained=paired["only_first"], lost=paired["only_second"], p_value=paired["p_value"])
    return sorted(rows, key=lambda row: tuple(row[name] for name in base))


def stored_ablation_dir(model: str, task: str = "arc_challenge", method: str = "cache_steering") -> Path:
    """Where the book's stored ablation of ``model`` on ``task`` lies (one folder per point)."""
    return stored_run_folder(task, method, model) / ABLATION_FOLDER


def ablation_table(run_dir: str | Path, base: Mapping[str, float] = ABLATION_BASE,
                   values: Mapping[str, Sequence[float]] = ABLATION_VALUES) -> str:
    """A Markdown table of :func:`ablation_rows`, one block of rows per varied setting (the base point in each),
    beside the paper's accuracy at the same value (:func:`paper.paper_ablation`; another model and split, so its
    level is not comparable, only its shape). A line names the points not run yet."""
    rows = ablation_rows(run_dir, base)
    paper, reference = paper_ablation(), load_paper_results()["ablation"]
    lines = [f"| setting | value | accuracy % (95% CI) | by the response alone % | by an answer phrase alone % | "
             f"states an answer % | words | loops % | right only here / only at the base (McNemar p) | paper, "
             f"{reference['model']} % |", "|---" * 10 + "|"]
    for setting in values:
        for row in sorted((row for row in rows if row["varied"] in (None, setting)), key=lambda row: row[setting]):
            low, high = row["ci95"]
            against = "base point" if row["varied"] is None else (
                f"{row['gained']} / {row['lost']} (p = {row['p_value']:.2f})" if "p_value" in row else "–")
            at_paper = paper[setting].get(float(row[setting]))
            lines.append(f"| {setting} | {row[setting]:g} | {100 * row['accuracy']:.0f} ({100 * low:.0f}–"
                         f"{100 * high:.0f}) | {100 * row['response_accuracy']:.0f} | "
                         f"{100 * row['phrase_accuracy']:.0f} | {100 * row['stated']:.0f} | "
                         f"{row['mean_words']:.0f} | {100 * row['degenerate']:.0f} | {against} | "
                         f"{'–' if at_paper is None else f'{at_paper:.1f}'} |")
    done = {tuple(float(row[name]) for name in base) for row in rows}
    missing = [point_name(_integral(point)) for point in ablation_points(base, values)
               if tuple(float(point[name]) for name in base) not in done]
    if missing:
        lines.append(f"\nNot run yet: {', '.join(missing)}.")
    return "\n".join(lines)


def _integral(point: Mapping[str, Any]) -> dict[str, Any]:
    """``point`` with its counts as integers, as its folder is named and its run is configured."""
    return {**point, "n_pairs": int(point["n_pairs"]), "n_demonstrations": int(point["n_demonstrations"])}
