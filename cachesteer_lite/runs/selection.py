"""Held-out selection of the steering settings: a grid of resumable runs on items the evaluation never sees.

:func:`select_settings` picks ``c_values`` (or a method's options, such as CAA's layer and multiplier), the
number of pairs and of demonstrations on held-out items (ARC: validation; GSM8K, CSQA, PIQA: train items after
the contrastive pool), never on the evaluation set, and :func:`apply_point` turns the chosen point into a config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..tasks.task import get_task
from .config import STEERING_SETTINGS, EvalConfig
from .methods import get_method
from .records import write_json
from .runner import evaluate

# The multipliers of the paper's CAA search (paper-reference section 4.1).
CAA_GRID_MULTIPLIERS: tuple[float, ...] = (0.5, 1.0, 3.0)
# Default grids of the held-out selection (the paper's ablation ranges, thinned for a CPU).
SELECTION_GRID: dict[str, tuple] = {
    "c_values": (1.0, 2.0, 4.0, 6.0, 8.0, 10.0),
    "n_pairs": (100,),
    "n_demonstrations": (5, 10),
}


def held_out_items(task: str, pool_size: int) -> tuple[str, int]:
    """(split, first index) of the items hyperparameters are chosen on: ARC's validation split; for the
    other tasks, train items after the first ``pool_size`` (the contrastive pool), since their evaluation
    split is the only other labelled one."""
    described = get_task(task)
    if described.held_out_split == described.eval_split:  # a guard: selection must never see the evaluation set
        raise AssertionError(f"held-out split of {task} is its evaluation split")
    return described.held_out_split, described.held_out_start(pool_size)


def select_settings(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base: EvalConfig,
    run_dir: str | Path,
    *,
    limit: int,
    c_values: Sequence[float] = SELECTION_GRID["c_values"],
    n_pairs: Sequence[int] = SELECTION_GRID["n_pairs"],
    n_demonstrations: Sequence[int] = SELECTION_GRID["n_demonstrations"],
    options: dict[str, Sequence] | None = None,
    memo: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the steering settings of a method on ``limit`` held-out items (:func:`held_out_items`), never
    the evaluation set: ``n_pairs``, ``n_demonstrations``, and ``c_values`` for cache steering or a grid of
    the method's ``options`` (CAA: ``{"layer": [...], "multiplier": [...]}``).

    Every grid point is a resumable run under ``run_dir/n{N}_k{K}_c{C}`` (options appended as ``_{name}{value}``);
    combinations with at least as many demonstrations as pairs are skipped. The grid's results and the best
    point (highest accuracy; the first in grid order on ties) are written to ``run_dir/selection.json`` and
    returned.
    """
    method = get_method(base.method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        raise ValueError(f"method {base.method!r} has no option {', '.join(unknown)} to select")
    steered = "c_values" in method.settings
    if not steered and not options:
        raise ValueError(f"method {base.method!r} has no steering settings to select")
    split, start = held_out_items(base.task, max(n_pairs))
    memo = memo if memo is not None else {}
    run_dir = Path(run_dir)
    grid, skipped = [], []
    for pairs, demos, c, *values in product(n_pairs, n_demonstrations, c_values if steered else (None,),
                                            *options.values()):
        point = {"n_pairs": pairs, "n_demonstrations": demos, **({"c_values": c} if steered else {}),
                 **dict(zip(options, values, strict=True))}
        if demos >= pairs:
            skipped.append(point)
            continue
        config = replace(apply_point(base, point), split=split, start=start, limit=limit)
        result = evaluate(model, tokenizer, config, run_dir / point_name(point), memo=memo, progress=progress)
        grid.append({**point, "accuracy": result["accuracy"], "ci95": result["ci95"],
                     "mean_tokens": result["mean_tokens"], "mean_words": result["mean_words"]})
    if not grid:
        raise ValueError("the grid has no valid point: every n_demonstrations is >= every n_pairs")
    best = max(grid, key=lambda row: row["accuracy"])  # max keeps the first of equal rows
    selection = {
        "task": base.task,
        "method": base.method,
        "held_out": {"split": split, "start": start, "limit": limit},
        "evaluation_split": get_task(base.task).eval_split,
        "grid": grid,
        "skipped": skipped,
        "best": {k: v for k, v in best.items() if k not in ("accuracy", "ci95", "mean_tokens", "mean_words")},
        "best_accuracy": best["accuracy"],
    }
    write_json(run_dir / "selection.json", selection)
    return selection


def apply_point(config: EvalConfig, point: dict[str, Any]) -> EvalConfig:
    """``config`` with a grid point's settings: config fields set directly, the rest as options."""
    fields = {name: value for name, value in point.items() if name in STEERING_SETTINGS}
    extra = {name: value for name, value in point.items() if name not in STEERING_SETTINGS}
    return replace(config, **fields, options={**config.options, **extra})


def point_name(point: dict[str, Any]) -> str:
    """``n100_k5_c2`` for cache steering; options follow as ``_layer14_multiplier3``."""
    name = f"n{point['n_pairs']}_k{point['n_demonstrations']}"
    if "c_values" in point:
        name += f"_c{point['c_values']:g}"
    for key, value in point.items():
        if key not in ("n_pairs", "n_demonstrations", "c_values"):
            name += f"_{key}{value:g}" if isinstance(value, (int, float)) else f"_{key}{value}"
    return name
