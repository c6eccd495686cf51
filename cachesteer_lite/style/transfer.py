"""Reasoning-style transfer: steer with a vector built from traces of one style, then measure the style.

The paper (paper-reference section 6) built one cache-steering vector per reasoning style from 20 ARC traces
in that style (5 demonstrations per pair, nearest-neighbour selection), steered SmolLM2-360M at
``c_values`` 6 on 20 ARC test questions, and reported how many answers opened in the style, with no code for
that count. Here every (style, coefficient) is an ordinary, resumable evaluation run (:func:`runs.runner.evaluate`
with ``style=`` set), and :mod:`classifier` measures adherence twice: by explicit rules and by a classifier on
sentence embeddings. The unsteered answers to the same questions are the reference: how often does a measure
find a style where none was asked for?

    python -m cachesteer_lite style-transfer --c-values 2 4 6 8 --limit 20

writes one run per style and coefficient under ``data/results/{model}/style_transfer/{style}/c{C}/`` and the
summary, ``summary.json``, beside them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.models import DEFAULT_MODEL, load_model
from ..core.vectors import model_id
from ..runs.cli import add_progress_argument, finite_float, positive_int
from ..runs.config import EvalConfig
from ..runs.records import read_records, write_json
from ..runs.runner import evaluate, run_directory
from ..tasks.quality import degenerate_share
from ..tasks.traces import STYLES
from .classifier import (
    StyleClassifier,
    adherence,
    confusion,
    held_out_evaluation,
    shipped_style_traces,
    style_traces_path,
)

TARGET_STYLES: tuple[str, ...] = tuple(style for style in STYLES if style != "default")
# The paper's style-transfer settings (paper-reference section 6).
PAPER_STYLE_SETTINGS: dict[str, Any] = {"n_pairs": 20, "n_demonstrations": 5, "c_values": 6.0, "limit": 20,
                                        "max_new_tokens": 256}


def style_run_dir(output_dir: str | Path, model: str, style: str | None, c_values: float) -> Path:
    """``output_dir/{model}/style_transfer/{style}/c{C}``; the unsteered reference is style "unsteered", c 0."""
    return run_directory(output_dir, model, "style_transfer", style or "unsteered") / f"c{c_values:g}"


def style_answers(output_dir: str | Path, model: str, style: str | None, c_values: float) -> list[str]:
    """The answers of one stored run of the grid, in item order: the texts its summary rows score."""
    records = read_records(style_run_dir(output_dir, model, style, c_values) / "items.jsonl")
    return [records[index]["response"] for index in sorted(records)]


def _row(style: str | None, c_values: float, result: dict, texts: list[str], classifier: StyleClassifier,
         target: str) -> dict[str, Any]:
    """One (steered style, coefficient, scored style) row of the summary."""
    measured = adherence(texts, target, classifier)
    return {
        "steered_style": style or "unsteered", "scored_style": target, "c_values": c_values, "n": result["n"],
        "accuracy": result["accuracy"], "accuracy_ci95": result["ci95"], "mean_words": result["mean_words"],
        "degenerate_share": degenerate_share(texts),
        **{f"{measure}_{key}": measured[measure][key] for measure in ("rules", "classifier")
           for key in ("count", "share", "ci95")},
        "rules_detected": measured["rules"]["detected"], "classifier_detected": measured["classifier"]["detected"],
    }


def run_style_transfer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    styles: Sequence[str] = TARGET_STYLES,
    c_values: Sequence[float] = (PAPER_STYLE_SETTINGS["c_values"],),
    limit: int = PAPER_STYLE_SETTINGS["limit"],
    n_pairs: int = PAPER_STYLE_SETTINGS["n_pairs"],
    n_demonstrations: int = PAPER_STYLE_SETTINGS["n_demonstrations"],
    max_new_tokens: int = PAPER_STYLE_SETTINGS["max_new_tokens"],
    batch_size: int = 16,
    output_dir: str | Path = "data/results",
    progress: bool = True,
) -> dict[str, Any]:
    """Steer the first ``limit`` ARC test questions with each style's vector at each coefficient, score
    accuracy and both adherence measures, and write ``summary.json``; returns the summary.

    The unsteered answers are scored against every style: how often a measure sees a style nobody asked for.
    """
    unknown = [style for style in styles if style not in TARGET_STYLES]
    if unknown or not styles:
        raise ValueError(f"unknown style(s) {unknown or '(none given)'}; choose from {', '.join(TARGET_STYLES)}")
    classifier = StyleClassifier.shipped(include_default=True)
    validation = held_out_evaluation(shipped_style_traces(include_default=True))
    name = model_id(model)
    memo: dict = {}  # one vector per style, shared by its coefficients
    rows: list[dict[str, Any]] = []
    for style in (None, *styles):
        for c in (0.0,) if style is None else c_values:
            if style is None:
                config = EvalConfig("arc_challenge", "baseline", limit=limit, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size)
            else:
                config = EvalConfig("arc_challenge", "cache_steering", c_values=float(c), n_pairs=n_pairs,
                                    n_demonstrations=n_demonstrations, traces=str(style_traces_path()), style=style,
                                    limit=limit, max_new_tokens=max_new_tokens, batch_size=batch_size)
            run_dir = style_run_dir(output_dir, name, style, float(c))
            result = evaluate(model, tokenizer, config, run_dir, memo=memo, progress=progress)
            texts = style_answers(output_dir, name, style, float(c))
            for target in styles if style is None else (style,):
                rows.append(_row(style, float(c), result, texts, classifier, target))
    summary = {
        "model": name,
        "settings": {"styles": list(styles), "c_values": [float(c) for c in c_values], "n_pairs": n_pairs,
                     "n_demonstrations": n_demonstrations, "limit": limit, "max_new_tokens": max_new_tokens,
                     "batch_size": batch_size, "questions": "first ARC-Challenge test items"},
        "classifier_held_out": {"accuracy": validation.accuracy, "ci95": list(validation.ci95),
                                "folds": validation.folds, "confusion": validation.confusion.counts},
        "rows": rows,
        "confusion": {measure: {f"{c:g}": _confusion_at(rows, measure, float(c)) for c in c_values}
                      for measure in ("rules", "classifier")},
    }
    path = style_run_dir(output_dir, name, None, 0.0).parent.parent / "summary.json"
    write_json(path, summary)
    return summary


def _confusion_at(rows: Sequence[dict], measure: str, c_values: float) -> dict[str, dict[str, int]]:
    """Intended vs detected style over every steered answer at one coefficient."""
    steered = [row for row in rows if row["steered_style"] != "unsteered" and row["c_values"] == c_values]
    intended = [row["steered_style"] for row in steered for _ in row[f"{measure}_detected"]]
    detected = [style for row in steered for style in row[f"{measure}_detected"]]
    return confusion(intended, detected).counts


def run(args: argparse.Namespace) -> int:
    """Run the style-transfer grid from the command line and print adherence and accuracy per row."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, progress=not args.no_progress)
    summary = run_style_transfer(model, tokenizer, styles=args.styles, c_values=args.c_values, limit=args.limit,
                                 n_pairs=args.n_pairs, n_demonstrations=args.n_demonstrations,
                                 max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                 output_dir=args.output_dir, progress=not args.no_progress)
    print(f"classifier, held out: {summary['classifier_held_out']['accuracy']:.2f}")
    for row in summary["rows"]:
        print(f"{row['steered_style']:>20} c={row['c_values']:<4g} scored as {row['scored_style']:<20} "
              f"rules {row['rules_count']}/{row['n']}, classifier {row['classifier_count']}/{row['n']}, "
              f"accuracy {row['accuracy']:.2f}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``style-transfer`` to the command line."""
    parser = commands.add_parser("style-transfer", help="steer with style vectors and measure the style",
                                 description=run.__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--styles", nargs="+", default=list(TARGET_STYLES), choices=TARGET_STYLES)
    parser.add_argument("--c-values", type=finite_float, nargs="+", default=[PAPER_STYLE_SETTINGS["c_values"]])
    parser.add_argument("--limit", type=positive_int, default=PAPER_STYLE_SETTINGS["limit"])
    parser.add_argument("--n-pairs", type=positive_int, default=PAPER_STYLE_SETTINGS["n_pairs"])
    parser.add_argument("--n-demonstrations", type=positive_int, default=PAPER_STYLE_SETTINGS["n_demonstrations"])
    parser.add_argument("--max-new-tokens", type=positive_int, default=PAPER_STYLE_SETTINGS["max_new_tokens"])
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--output-dir", type=Path, default=Path("data/results"))
    add_progress_argument(parser)
    parser.set_defaults(handler=run)
