"""The findings box: verdicts by fixed rules over the stored runs, with numbers a reader can recount."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from cachesteer_lite import findings
from cachesteer_lite.findings import common, evaluation
from cachesteer_lite.runs.ablation import ablation_rows, ablation_table, stored_ablation_dir
from cachesteer_lite.runs.answer_source import source_table
from cachesteer_lite.runs.results import stored_run_folder
from cachesteer_lite.runs.sampling import (
    BASELINE,
    SAMPLED_TASKS,
    STEERING,
    item_gains,
    paper_sampled,
    sampling_summary,
    seed_records,
)
from cachesteer_lite.runs.statistics import mean_sample_size, paired_sample_size

ROOT = Path(__file__).resolve().parents[2]


def _comparison(only_first: int, only_second: int, p_value: float, n: int = 300) -> dict:
    return {"n": n, "only_first": only_first, "only_second": only_second, "p_value": p_value,
            "difference": 100 * (only_first - only_second) / n}


def test_a_difference_counts_only_beyond_chance() -> None:
    assert common.accuracy_verdict({"arc": _comparison(30, 20, 0.20)}).startswith("**Not confirmed**")
    assert common.accuracy_verdict({"arc": _comparison(40, 15, 0.001)}) == "**Confirmed** on arc"
    mixed = common.accuracy_verdict({"arc": _comparison(40, 15, 0.001), "piqa": _comparison(10, 40, 0.001)})
    assert mixed == "**Contradicted** on piqa, confirmed on arc"


def test_the_accuracy_row_recounts_the_stored_records() -> None:
    row = evaluation.comparison_row("Cache steering raises accuracy", "cache_steering", "baseline")
    steered = common.stored("arc_challenge", "cache_steering").records
    baseline = common.stored("arc_challenge", "baseline").records
    only_steered = sum(steered[i]["correct"] and not baseline[i]["correct"] for i in steered)
    only_baseline = sum(baseline[i]["correct"] and not steered[i]["correct"] for i in steered)
    assert f"arc_challenge {100 * (only_steered - only_baseline) / len(steered):+.1f} ({only_steered} vs " \
           f"{only_baseline} items" in row.ours
    # The questions needed: the paper's gain against our share of items that changed.
    points = common.paper_gain("arc_challenge", "cache_steering", "baseline")
    assert points is not None
    gain = points / 100
    needed = paired_sample_size((only_steered + only_baseline) / len(steered), gain)
    assert f"arc_challenge {100 * gain:+.2f} points: {needed:,} questions" in row.to_settle


def test_every_claim_of_both_papers_has_a_row() -> None:
    box = findings.findings_markdown()
    claims = [row.claim for row in findings.findings()]
    assert len(claims) == 10 and all(f"- **{claim}.** *Verdict:* **" in box for claim in claims)
    assert all(row.verdict.startswith("**") for row in findings.findings())
    assert [row.claim for row in findings.evaluation_findings()] == claims[:6]


def test_notebook_5_ends_with_the_landing_pages_verdicts() -> None:
    """Notebook 5's committed verdicts are the findings of today's stored runs (re-execute it when they change)."""
    notebook = json.loads((ROOT / "notebooks" / "05_evaluation.ipynb").read_text(encoding="utf-8"))
    shown = ["".join(output["data"]["text/markdown"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
             and "findings_markdown(" in "".join(cell["source"]) for output in cell["outputs"]
             if "text/markdown" in output.get("data", {})]
    assert shown == [findings.findings_markdown(findings.evaluation_findings())]


def _shown_markdown(call: str) -> list[str]:
    """The Markdown outputs of notebook 5's code cells that make ``call``."""
    notebook = json.loads((ROOT / "notebooks" / "05_evaluation.ipynb").read_text(encoding="utf-8"))
    return ["".join(output["data"]["text/markdown"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
            and call in "".join(cell["source"]) for output in cell["outputs"]
            if "text/markdown" in output.get("data", {})]


def test_notebook_5_shows_the_answer_sources_and_the_ablation_of_the_stored_runs() -> None:
    assert _shown_markdown("source_table(") == [source_table(model=findings.STORED_MODEL)]
    assert _shown_markdown("ablation_table(") == [ablation_table(stored_ablation_dir(findings.STORED_MODEL))]


def test_the_ablation_row_follows_the_paired_tests_against_the_base_point() -> None:
    row = evaluation.ablation_row()
    varied = [point for point in ablation_rows(stored_ablation_dir(findings.STORED_MODEL)) if point["varied"]]
    moved = [point for point in varied if point["p_value"] < common.SIGNIFICANT]
    assert row.verdict.startswith("**Not reproduced**" if moved else "**Holds for accuracy**")
    assert f"{len(moved)} of {len(varied)} points differ from the base" in row.ours


def test_the_control_row_counts_what_the_stored_control_changed() -> None:
    row = evaluation.control_row()
    for task in common.CHOICE_TASKS:
        effect = evaluation.control_effect(task)
        assert f"{task}: {100 * effect.answers_changed / effect.n:.0f}% of the scored answers" in row.ours
    shares = [evaluation.control_effect(task).answers_changed / 300 for task in common.CHOICE_TASKS]
    assert row.verdict.startswith("**Holds**" if max(shares) <= evaluation.CONTROL_TOLERANCE else "**Not reproduced**")


def test_the_sampling_row_follows_the_pooled_intervals() -> None:
    row = evaluation.sampling_row()
    intervals = {}
    for task in SAMPLED_TASKS:
        summary = sampling_summary(task, findings.STORED_MODEL)
        if summary is None:  # not sampled yet: the row says so
            assert f"The sampled runs of {task}" in row.to_settle and task not in row.ours
            continue
        intervals[task] = low, high = summary.pooled["ci95"]
        assert f"{task} {summary.pooled['mean']:+.1f} [{low:+.1f}, {high:+.1f}]" in row.ours
        # The questions a pooled test needs: the paper's sampled gain against our questions' spread of gains.
        base, steered = (paper_sampled(task, method, evaluation.PAPER_MODEL) for method in (BASELINE, STEERING))
        assert base and steered
        gain = steered[0] - base[0]
        gains = item_gains(*(seed_records(stored_run_folder(task, method, findings.STORED_MODEL) / "sampling")[1]
                             for method in (BASELINE, STEERING)))
        needed = mean_sample_size(statistics.stdev(gains), gain)
        assert f"{task} {gain:+.2f} points: {needed:,} questions" in row.to_settle
    assert intervals, "the book ships at least one task's sampled runs"
    better = [task for task, (low, _) in intervals.items() if low > 0]
    worse = [task for task, (_, high) in intervals.items() if high < 0]
    if worse:
        assert row.verdict.startswith(f"**Contradicted** on {', '.join(worse)}")
    elif better:
        assert row.verdict == f"**Confirmed** on {', '.join(better)}"
    else:
        assert row.verdict.startswith("**Not confirmed**")
