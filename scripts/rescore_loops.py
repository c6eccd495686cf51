"""Measure the stored loop shares again after the loop measure (``cachesteer_lite.tasks.quality``) changes.

Every stored run's ``degenerate`` shares (per sampling seed and their mean) and the style-transfer summary's
``degenerate_share`` are measured again from the answers in the records; nothing else in a file changes, and a file
whose shares stay the same is not rewritten. ``tests/runs/test_results.py`` checks that the stored shares agree with
the measure, so a change to the measure fails the tests until this has run.

    python scripts/rescore_loops.py [RESULTS_DIR]      # default: the book's stored results
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from cachesteer_lite.runs.records import read_json, write_json
from cachesteer_lite.runs.results import measured_loop_shares, stored_results_dir
from cachesteer_lite.style.transfer import style_answers
from cachesteer_lite.tasks.quality import degenerate_share


def rescore_run(path: Path) -> bool:
    """Re-measure one ``results.json``; whether it changed. Results written before the runner stored the share
    are measured whenever they are read (:func:`runs.results.degenerate`), so they are left as they are."""
    result = read_json(path)
    if "degenerate" not in result:
        return False
    shares = measured_loop_shares(result, path.parent)
    before = [run.get("degenerate") for run in result["runs"]], result.get("degenerate")
    for run, share in zip(result["runs"], shares, strict=True):
        run["degenerate"] = share
    result["degenerate"] = statistics.fmean(shares)
    if before == (shares, result["degenerate"]):
        return False
    print(f"{path.parent}: {before[1]} -> {result['degenerate']}")
    write_json(path, result)
    return True


def rescore_style_summary(path: Path) -> bool:
    """Re-measure the style-transfer summary's rows from the answers of each steered run; whether it changed."""
    summary = read_json(path)
    results_dir = path.parents[2]  # {results}/{model}/style_transfer/summary.json
    changed = False
    for row in summary["rows"]:
        share = degenerate_share(style_answers(results_dir, summary["model"], row["steered_style"], row["c_values"]))
        if share != row["degenerate_share"]:
            print(f"{path} {row['steered_style']} c={row['c_values']:g}: {row['degenerate_share']} -> {share}")
            row["degenerate_share"], changed = share, True
    if changed:
        write_json(path, summary)
    return changed


def main(results_dir: Path) -> int:
    """Re-measure every stored run under ``results_dir`` and report how many files changed."""
    changed = sum(rescore_run(path) for path in sorted(results_dir.rglob("results.json")))
    changed += sum(rescore_style_summary(path) for path in sorted(results_dir.glob("*/style_transfer/summary.json")))
    print(f"{changed} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else stored_results_dir()))
