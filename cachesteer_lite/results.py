"""The paper's reference figures (``data/paper_results.json``) and our results beside them.

The JSON transcribes paper-reference section 7: greedy accuracy and mean response words per model, task
and method, and the five-seed sampling means and standard deviations. Absent results are ``null`` with a
``status`` saying why (file not available, no such run, or files that contradict the config).

Our results are the ``results.json`` files the evaluation runner writes under ``data/results/{model}/{task}/
{method}/``. The book's reproducibility page shows them through this module only, so that no number there is
typed by hand::

    python -m cachesteer_lite.results                       # print the table
    python -m cachesteer_lite.results --update book/reproducibility.md
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .data import TASKS
from .quality import degenerate_share

PROJECT = Path(__file__).resolve().parents[1]
PAPER_RESULTS = PROJECT / "data" / "paper_results.json"
RESULTS_DIR = PROJECT / "data" / "results"
# The block of a Markdown page that --update rewrites.
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
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
            "degenerate": None if result.get("degenerate") is None else 100 * result["degenerate"],
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
    """:func:`compare` as a Markdown table (accuracy in %, words, % of degenerate answers, difference in
    points)."""
    lines = ["| model | task | method | n | ours (95% CI or ± sd) | words | degenerate % | paper model | paper | "
             "paper words | ours − paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in compare(results, paper_model):
        if row["ci95"] is not None:
            ours = f"{row['accuracy']:.2f} [{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}]"
        else:
            ours = f"{row['accuracy']:.2f} ± {_number(row['accuracy_sd'])}"
        paper = _number(row["paper_accuracy"]) if row["paper_accuracy"] is not None else row["paper_status"]
        if row["paper_sd"] is not None:
            paper += f" ± {row['paper_sd']:.2f}"
        lines.append(f"| {row['model']} | {row['task']} | {row['method']} | {row['n']} | {ours} | "
                     f"{row['mean_words']:.0f} | {_number(row['degenerate'], 0)} | {row['paper_model'] or '–'} | "
                     f"{paper} | {_number(row['paper_words'], 0)} | {_number(row['difference'], signed=True)} |")
    return "\n".join(lines)


def degenerate(result: dict[str, Any], run_dir: str | Path) -> float:
    """The share of degenerate answers of a stored run: from its results, or, for results written before the
    runner recorded it, from the answers in its items files (the mean over sampling runs)."""
    from .evaluate import read_records  # the runner's reader: it skips a line a killed run left unfinished

    if "degenerate" in result:
        return result["degenerate"]
    shares = [degenerate_share([r["response"] for r in read_records(Path(run_dir) / run["items_file"]).values()])
              for run in result["runs"]]
    return sum(shares) / len(shares)


def collect(results_dir: str | Path = RESULTS_DIR, model: str | None = None) -> list[dict[str, Any]]:
    """Every finished run under ``results_dir/{model}/{task}/{method}/results.json`` (held-out selection runs,
    one level deeper, are not included), in task order and then the paper's method order."""
    methods = list(PAPER_METHODS)
    found = []
    for path in sorted(Path(results_dir).glob("*/*/*/results.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        if model is None or result["model"] == model:
            found.append({**result, "degenerate": degenerate(result, path.parent), "run_dir": str(path.parent)})
    rank = {name: i for i, name in enumerate(methods)}
    return sorted(found, key=lambda r: (r["model"], TASKS.index(r["task"]), rank.get(r["method"], len(rank)),
                                        r["method"]))


def collect_grids(results_dir: str | Path = RESULTS_DIR, model: str | None = None) -> list[dict[str, Any]]:
    """Every finished point of every held-out selection grid (``{task}/{method}/selection/{point}/``): its
    steering settings, accuracy with its interval, mean length and the share of degenerate answers.

    The coefficient is ``c_values`` for cache steering and the multiplier for CAA, so that the stability of the
    two methods can be plotted on one axis; the degenerate share is :func:`degenerate`'s, so it exists for grids
    run before the runner recorded it too.
    """
    rows = []
    for path in sorted(Path(results_dir).glob("*/*/*/selection/*/results.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        if model is not None and result["model"] != model:
            continue
        config, options = result["config"], result["config"].get("options", {})
        steers_cache = "multiplier" not in options
        rows.append({
            "model": result["model"], "task": result["task"], "method": result["method"],
            "n_pairs": config["n_pairs"], "n_demonstrations": config["n_demonstrations"],
            "layer": options.get("layer"), "mode": options.get("mode"),
            "coefficient_name": "c_values" if steers_cache else "multiplier",
            "coefficient": config["c_values"] if steers_cache else options["multiplier"],
            "n": result["n"], "accuracy": result["accuracy"], "ci95": result["ci95"],
            "mean_tokens": result["mean_tokens"], "mean_words": result["mean_words"],
            "degenerate": degenerate(result, path.parent),
        })
    return sorted(rows, key=lambda r: (r["model"], TASKS.index(r["task"]), r["method"], r["layer"] or 0,
                                       r["coefficient"]))


def paired_comparison(first: dict[int, dict], second: dict[int, dict]) -> dict[str, Any]:
    """Two methods on the same items (records by item index, as ``evaluate.read_records`` returns them):
    how many items each got right alone, and the exact two-sided McNemar p-value of the difference.

    Accuracy intervals of two methods overlap easily at n = 300; the paired view asks the sharper question of
    whether the items one method fixed outnumber those it broke by more than chance would.
    """
    if set(first) != set(second):
        raise ValueError("the two runs cover different items: compare runs of the same task, split and limit")
    only_first = sum(first[i]["correct"] and not second[i]["correct"] for i in first)
    only_second = sum(second[i]["correct"] and not first[i]["correct"] for i in first)
    both = sum(first[i]["correct"] and second[i]["correct"] for i in first)
    discordant = only_first + only_second
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1)) / 2**discordant
    return {"n": len(first), "both": both, "only_first": only_first, "only_second": only_second,
            "neither": len(first) - both - discordant, "p_value": min(1.0, 2 * tail) if discordant else 1.0}


def update_page(path: str | Path, table: str) -> bool:
    """Replace the text between :data:`TABLE_START` and :data:`TABLE_END` in ``path`` with ``table``;
    returns whether the page changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    block = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.DOTALL)
    if not block.search(text):
        raise ValueError(f"{path} has no {TABLE_START} ... {TABLE_END} block to update")
    updated = block.sub(lambda _: f"{TABLE_START}\n{table}\n{TABLE_END}", text)
    path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: Sequence[str] | None = None) -> int:
    """Print our stored results beside the paper's, or write them into a page's results block."""
    parser = argparse.ArgumentParser(prog="python -m cachesteer_lite.results", description=main.__doc__)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--model", default=None, help="only this model's runs")
    parser.add_argument("--update", type=Path, metavar="PAGE", help="rewrite the results block of this page")
    arguments = parser.parse_args(argv)
    table = comparison_table(collect(arguments.results_dir, arguments.model))
    if arguments.update is None:
        print(table)
    else:
        changed = update_page(arguments.update, table)
        print(f"{arguments.update}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
