"""Notebook 2's checkers accept the reference solutions and reject the usual wrong answers with a hint.

The runs are written straight to disk through the generator's own store (no teacher needed); one slow test asks
the local server for real, as the notebook does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cachesteer_lite as cs
from cachesteer_lite.course import traces
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.tasks.data import Item
from cachesteer_lite.tasks.traces import Trace
from cachesteer_lite.teacher import LocalServer, RejectedTrace, RunReport, TraceStore, generate_traces

ITEMS = cs.load_items("arc_challenge", "train", limit=3)


def stored_run(out: Path, outcomes: list[str], style: str = "default", items: list[Item] = ITEMS) -> RunReport:
    """Store one result per item ("accepted" or a rejection code) in ``out`` and its rejected sibling, as
    generate_traces does, and return the run's report."""
    store = TraceStore(out)
    for item, outcome in zip(items[:len(outcomes)], outcomes, strict=True):
        trace = Trace(item.task, item.split, item.index, item.source_id, item.question,
                      ["A first step about the question.", f"So the answer is {item.answer}."], item.answer, style,
                      {"teacher": "test", "prompt_version": "test", "date": "2026-01-01", "usage": None})
        store.add(trace if outcome == "accepted" else RejectedTrace(trace, f"{outcome}: test", "raw reply"))
    store.sort()
    rejected = [o for o in outcomes if o != "accepted"]
    return RunReport(out, "test", items=len(outcomes), accepted=len(outcomes) - len(rejected), rejected=len(rejected),
                     reasons={code: rejected.count(code) for code in set(rejected)})


@pytest.fixture
def default_run(tmp_path: Path) -> RunReport:
    return stored_run(tmp_path / "arc_challenge.jsonl", ["accepted", "wrong_answer", "no_answer"])


def test_acceptance_rate(default_run: RunReport) -> None:
    check = traces.check_acceptance_rate
    verdict = check(1 / 3, default_run.out, ITEMS)
    assert verdict.correct and "1 of 3 replies" in verdict.message and "no_answer 1" in verdict.message
    assert "*rejected*" in check(2 / 3, default_run.out, ITEMS).message
    assert "percentage" in check(100 / 3, default_run.out, ITEMS).message
    assert "number of accepted traces" in check(1, default_run.out, ITEMS).message
    assert "run the generation cell" in check(0.5, default_run.out.with_name("none.jsonl"), ITEMS).message


def test_broken_file(tmp_path: Path) -> None:
    source = cs.book_file("data/traces/arc_challenge.jsonl")
    error = traces.read_error(traces.torn_copy(source, tmp_path))  # the reference solution, as the learner builds it
    assert ", line 4: not valid JSON" in error
    for answer in (4, error, ValueError(error), "4"):
        verdict = traces.check_broken_file(answer, source)
        assert verdict.correct and "line 4" in verdict.message, answer
    assert "counts lines from 1" in traces.check_broken_file(3, source).message
    assert "does not exist" in traces.check_broken_file(FileNotFoundError("x.jsonl: no such trace file"),
                                                        source).message
    assert "cut the next one after 40" in traces.check_broken_file(101, source).message
    assert "names no line" in traces.check_broken_file("not valid JSON", source).message


def test_other_style(default_run: RunReport, tmp_path: Path) -> None:
    check = traces.check_other_style
    styled = stored_run(tmp_path / "causal_chain.jsonl", ["accepted", "accepted", "too_few_steps"], "causal_chain")
    verdict = check(styled, ITEMS, default_run)
    assert verdict.correct, verdict
    assert "causal_chain: 2 accepted, 1 rejected (too_few_steps 1)" in verdict.message
    assert "no_answer 1 -> 0" in verdict.message and "2 of 3 items have another outcome" in verdict.message
    assert "default-style traces only" in check(default_run, ITEMS, default_run).message
    assert "summary text" in check(styled.summary(), ITEMS, default_run).message
    same_file = stored_run(default_run.out, ["accepted"] * 3, "causal_chain")  # both styles in the default's file
    assert "new output file" in check(same_file, ITEMS, default_run).message
    stopped = stored_run(tmp_path / "stopped.jsonl", ["accepted"], "causal_chain")
    assert "call generate_traces again" in check(stopped, ITEMS, default_run).message
    assert "other item" in check(styled, ITEMS[:2], default_run).message


@pytest.mark.slow
def test_other_style_against_the_local_teacher(tmp_path: Path) -> None:
    """The notebook's reference solution, on two items: the default run, then the causal-chain one."""
    items = ITEMS[:2]
    with LocalServer("smollm2-135m-instruct", log_dir=tmp_path / "serve") as server:
        endpoint = dict(model=server.model, base_url=server.base_url, api_key="local")
        report = generate_traces(items, tmp_path / "arc_challenge.jsonl", max_tokens=60, progress=False, **endpoint)
        styled = generate_traces(items, tmp_path / "causal_chain.jsonl", style="causal_chain", max_tokens=60,
                                 progress=False, **endpoint)
    assert traces.check_acceptance_rate(report.accepted / len(items), report.out, items).correct
    verdict = traces.check_other_style(styled, items, report)
    assert verdict.correct and verdict.message.startswith("causal_chain: "), verdict


@pytest.mark.parametrize("answer", [..., None, object()])
def test_blank_or_malformed_answers_get_a_message(answer, default_run: RunReport) -> None:
    source = cs.book_file("data/traces/arc_challenge.jsonl")
    for verdict in (traces.check_acceptance_rate(answer, default_run.out, ITEMS),
                    traces.check_broken_file(answer, source),
                    traces.check_other_style(answer, ITEMS, default_run)):
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
