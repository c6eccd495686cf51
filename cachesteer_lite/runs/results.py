"""Stored runs, read back: every ``results.json`` under a results folder, its records, and the paper beside it.

Our results are the files the runner writes under ``data/results/{model}/{task}/{method}/``. The book shows them
through this module only, so that no number on its pages is typed by hand. Reading never changes a stored file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..files import book_folder
from ..tasks.quality import degenerate_share
from ..tasks.task import TASK_NAMES
from .methods import strength_of
from .paper import PAPER_METHODS, load_paper_results, paper_entry, paper_model_for
from .records import read_json, read_records

RESULTS_FOLDER = "data/results"


def stored_results_dir() -> Path:
    """The book's stored results (``data/results``): the checkout's, or their results and records downloaded."""
    return book_folder(RESULTS_FOLDER, patterns=("*.json", "*.jsonl"))


class StoredRun(NamedTuple):
    """A finished run: its ``results.json`` and the records of its (first) items file, by item index."""

    result: dict[str, Any]
    records: dict[int, dict]


def load_run(run_dir: str | Path) -> StoredRun:
    """The finished run in ``run_dir`` (a run still in progress has records but no results.json)."""
    run_dir = Path(run_dir)
    result = read_json(run_dir / "results.json")
    return StoredRun(result, read_records(run_dir / result["runs"][0]["items_file"]))


def stored_run_folder(task: str, method: str, model: str, results_dir: Path | None = None) -> Path:
    """Where the run of ``model`` (a name or hub id) for ``method`` on ``task`` lies under ``results_dir`` (default:
    the book's stored results); its sampling run lies in the ``sampling`` folder inside."""
    return (results_dir or stored_results_dir()) / model.replace("/", "__") / task / method


def stored_run(task: str, method: str, model: str) -> StoredRun | None:
    """A finished stored run, or None when there is none (a run still in progress has no results.json)."""
    run_dir = stored_run_folder(task, method, model)
    return load_run(run_dir) if (run_dir / "results.json").is_file() else None


def degenerate(result: dict[str, Any], run_dir: str | Path) -> float:
    """The share of degenerate answers of a stored run: from its results, or, for results written before the
    runner recorded it, from the answers in its items files (the mean over sampling runs)."""
    if "degenerate" in result:
        return result["degenerate"]
    shares = measured_loop_shares(result, run_dir)
    return sum(shares) / len(shares)


def measured_loop_shares(result: dict[str, Any], run_dir: str | Path) -> list[float]:
    """The share of degenerate answers of each run of a stored result (one per sampling seed), measured now from
    the answers in its items files: what its ``degenerate`` fields hold while the measure stays the same."""
    return [degenerate_share([r["response"] for r in read_records(Path(run_dir) / run["items_file"]).values()])
            for run in result["runs"]]


def collect(results_dir: str | Path | None = None, model: str | None = None,
            sampling: bool = False) -> list[dict[str, Any]]:
    """Every finished greedy run under ``results_dir/{model}/{task}/{method}/results.json`` (default: the book's
    stored results; held-out selection runs, one level deeper, are not included), or with ``sampling`` every sampling
    run (``{method}/sampling/results.json``), in task order and then the paper's method order. Each result carries
    its ``degenerate`` share and its ``run_dir``."""
    root = Path(results_dir) if results_dir is not None else stored_results_dir()
    found = []
    for path in sorted(root.glob("*/*/*/sampling/results.json" if sampling else "*/*/*/results.json")):
        result = read_json(path)
        if model is None or result["model"] == model:
            found.append({**result, "degenerate": degenerate(result, path.parent), "run_dir": str(path.parent)})
    rank = {name: i for i, name in enumerate(PAPER_METHODS)}
    return sorted(found, key=lambda r: (r["model"], TASK_NAMES.index(r["task"]), rank.get(r["method"], len(rank)),
                                        r["method"]))


def collect_grids(results_dir: str | Path | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """Every finished point of every held-out selection grid (``{task}/{method}/selection/{point}/``): its
    steering settings, accuracy with its interval, mean length and the share of degenerate answers.

    The coefficient is the method's steering strength (:func:`methods.strength_of`: ``c_values`` for cache
    steering, the multiplier for CAA), so that the stability of the two methods can be plotted on one axis.
    """
    root = Path(results_dir) if results_dir is not None else stored_results_dir()
    rows = []
    for path in sorted(root.glob("*/*/*/selection/*/results.json")):
        result = read_json(path)
        if model is not None and result["model"] != model:
            continue
        config, options = result["config"], result["config"].get("options", {})
        strength = strength_of(result["method"], config)
        if strength is None:
            raise ValueError(f"{path}: method {result['method']!r} has no steering strength to select")
        rows.append({
            "model": result["model"], "task": result["task"], "method": result["method"],
            "n_pairs": config["n_pairs"], "n_demonstrations": config["n_demonstrations"],
            "layer": options.get("layer"), "mode": options.get("mode"),
            "coefficient_name": strength[0], "coefficient": strength[1],
            "n": result["n"], "accuracy": result["accuracy"], "ci95": result["ci95"],
            "mean_tokens": result["mean_tokens"], "mean_words": result["mean_words"],
            "degenerate": degenerate(result, path.parent),
        })
    return sorted(rows, key=lambda r: (r["model"], TASK_NAMES.index(r["task"]), r["method"], r["layer"] or 0,
                                       r["coefficient"]))


def comparable(result: dict[str, Any], paper_model: str) -> bool:
    """Whether a result can be set against the paper's number: the paper's own model (not only its family) on
    the paper's whole evaluation split. A 12-question run of another model size is not."""
    same_model = result["model"].rsplit("/", 1)[-1].lower() == paper_model.lower()
    return same_model and result["n"] == load_paper_results()["n"][result["task"]]


def compare(results: Sequence[dict[str, Any]], paper_model: str | None = None) -> list[dict[str, Any]]:
    """One row per result (as :func:`runner.evaluate` returns it): our accuracy (%) and words beside the
    paper's, with the paper's model and number of questions, and the difference in points (ours - paper) where
    the paper has a value and the two are :func:`comparable`.

    ``paper_model`` defaults to the paper model of the same family as each result's model.
    """
    rows = []
    for result in results:
        sampling = bool(result["config"].get("do_sample"))
        reference = paper_model or paper_model_for(result["model"])
        entry = paper_entry(result["task"], result["method"], reference, sampling) if reference else None
        paper_accuracy = None if entry is None else entry["accuracy_mean" if sampling else "accuracy"]
        ours = 100 * result["accuracy"]
        same_setting = reference is not None and paper_accuracy is not None and comparable(result, reference)
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
            "paper_n": load_paper_results()["n"][result["task"]] if entry else None,
            "paper_accuracy": paper_accuracy,
            "paper_sd": entry.get("accuracy_sd") if entry else None,
            "paper_words": entry.get("mean_words") if entry else None,
            "paper_status": entry["status"] if entry else "not in the paper",
            "difference": ours - paper_accuracy if same_setting and paper_accuracy is not None else None,
        })
    return rows


def _number(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def comparison_table(results: Sequence[dict[str, Any]], paper_model: str | None = None) -> str:
    """:func:`compare` as a Markdown table (accuracy in %, words, % of degenerate answers, the paper's model, n and
    numbers, and the difference in points where the settings are :func:`comparable`)."""
    lines = ["| model | task | method | n | ours (95% CI or ± sd) | words | degenerate % | paper model | paper n | "
             "paper | paper words | ours − paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
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
                     f"{row['paper_n'] or '–'} | {paper} | {_number(row['paper_words'], 0)} | "
                     f"{_number(row['difference'], signed=True)} |")
    return "\n".join(lines)
