"""The paper's reference figures (``data/paper_results.json``) and our results beside them.

The JSON transcribes paper-reference section 7: greedy accuracy and mean response words per model, task
and method, and the five-seed sampling means and standard deviations. Absent results are ``null`` with a
``status`` saying why (file not available, no such run, or files that contradict the config).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "data" / "paper_results.json"
# Our method names -> the paper's (a CAA method registered later compares with activation steering).
PAPER_METHODS: dict[str, str] = {
    "baseline": "baseline",
    "cot": "cot",
    "cache_steering": "cache_steering",
    "cache_steering_cot": "cache_steering_cot",
    "caa": "activation_steering",
    "activation_steering": "activation_steering",
}
# Lower-case name fragments -> the paper model of that family (the nearest size the paper ran).
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("smollm2", "SmolLM2-360M-Instruct"),
    ("qwen2", "Qwen2-0.5B-Instruct"),
    ("llama-3.2-1b", "Llama-3.2-1B-Instruct"),
    ("llama-3.2-3b", "Llama-3.2-3B-Instruct"),
    ("llama-3.1-8b", "Llama-3.1-8B-Instruct"),
    ("phi-4-mini", "Phi-4-mini-instruct"),
)


@lru_cache(maxsize=4)
def load_paper_results(path: str | Path = PAPER_RESULTS) -> dict[str, Any]:
    """The parsed reference file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def paper_models() -> list[str]:
    """The models of the paper's tables."""
    return list(dict.fromkeys(row["model"] for row in load_paper_results()["greedy"]))


def paper_model_for(model: str) -> str | None:
    """The paper model of the same family as ``model`` (SmolLM2-135M -> SmolLM2-360M-Instruct), or None."""
    name = model.lower()
    return next((paper for fragment, paper in _FAMILIES if fragment in name), None)


def paper_entry(task: str, method: str, paper_model: str, sampling: bool = False) -> dict[str, Any] | None:
    """The paper's row for (model, task, method) from the greedy or the sampling table, or None when the
    table has no such row (for example a method the paper did not run)."""
    paper_method = PAPER_METHODS.get(method)
    table = load_paper_results()["sampling" if sampling else "greedy"]
    return next((row for row in table
                 if (row["model"], row["task"], row["method"]) == (paper_model, task, paper_method)), None)


def compare(results: Sequence[dict[str, Any]], paper_model: str | None = None) -> list[dict[str, Any]]:
    """One row per result (as :func:`evaluate.evaluate` returns it): our accuracy (%) and words beside the
    paper's, with the difference in points (ours - paper) where the paper has a value.

    ``paper_model`` defaults to the paper model of the same family as each result's model.
    """
    rows = []
    for result in results:
        sampling = bool(result["config"].get("do_sample"))
        reference = paper_model or paper_model_for(result["model"])
        entry = paper_entry(result["task"], result["method"], reference, sampling) if reference else None
        paper_accuracy = None if entry is None else entry["accuracy_mean" if sampling else "accuracy"]
        ours = 100 * result["accuracy"]
        rows.append({
            "task": result["task"],
            "method": result["method"],
            "model": result["model"],
            "n": result["n"],
            "accuracy": ours,
            "ci95": None if result["ci95"] is None else [100 * x for x in result["ci95"]],
            "accuracy_sd": None if result["accuracy_sd"] is None else 100 * result["accuracy_sd"],
            "mean_words": result["mean_words"],
            "paper_model": reference,
            "paper_accuracy": paper_accuracy,
            "paper_sd": entry.get("accuracy_sd") if entry else None,
            "paper_words": entry.get("mean_words") if entry else None,
            "paper_status": entry["status"] if entry else "not in the paper",
            "difference": None if paper_accuracy is None else ours - paper_accuracy,
        })
    return rows


def _number(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def comparison_table(results: Sequence[dict[str, Any]], paper_model: str | None = None) -> str:
    """:func:`compare` as a Markdown table (accuracy in %, words, difference in points)."""
    lines = ["| task | method | n | ours (95% CI or ± sd) | words | paper model | paper | paper words | ours − paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in compare(results, paper_model):
        if row["ci95"] is not None:
            ours = f"{row['accuracy']:.2f} [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"
        else:
            ours = f"{row['accuracy']:.2f} ± {_number(row['accuracy_sd'])}"
        paper = _number(row["paper_accuracy"]) if row["paper_accuracy"] is not None else row["paper_status"]
        if row["paper_sd"] is not None:
            paper += f" ± {row['paper_sd']:.2f}"
        lines.append(f"| {row['task']} | {row['method']} | {row['n']} | {ours} | {row['mean_words']:.0f} | "
                     f"{row['paper_model'] or '–'} | {paper} | {_number(row['paper_words'], 0)} | "
                     f"{_number(row['difference'], signed=True)} |")
    return "\n".join(lines)
