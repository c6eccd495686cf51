"""Trace files: every shipped file validates, and each kind of damage gives a clear error or problem.

Bad inputs are built in ``tmp_path`` from real shipped PIQA traces, so the checks run against the task data.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from cachesteer_lite.__main__ import main
from cachesteer_lite.runs.records import append_records, write_records
from cachesteer_lite.tasks.traces import STYLES, Trace, read_traces, validate_traces

from conftest import REPO

TRACE_DIR = REPO / "data" / "traces"
SHIPPED = sorted(p for p in TRACE_DIR.glob("*.jsonl") if not p.name.endswith(".rejected.jsonl"))


@pytest.fixture(scope="module")
def piqa() -> list[Trace]:
    """The shipped hand-written PIQA traces."""
    return read_traces(TRACE_DIR / "piqa.jsonl")


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _with_other_letter(text: str, answer: str) -> tuple[str, str]:
    """``text`` with "answer is {answer}" changed to another letter, and that letter."""
    other = "A" if answer != "A" else "B"
    changed = re.sub(rf"answer is {answer}\b", f"answer is {other}", text)
    assert changed != text
    return changed, other


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_file_validates(path: Path) -> None:
    traces = read_traces(path)
    assert traces
    assert validate_traces(traces) == []


def test_piqa_traces_cover_the_first_hundred_train_items(piqa: list[Trace]) -> None:
    assert [trace.index for trace in piqa] == list(range(100))
    assert {(trace.task, trace.split, trace.style) for trace in piqa} == {("piqa", "train", "default")}
    assert all(30 <= len(trace.reasoning.split()) <= 100 for trace in piqa)


def test_reasoning_joins_steps_with_spaces(piqa: list[Trace]) -> None:
    trace = piqa[0]
    assert trace.reasoning == " ".join(trace.steps)
    assert trace.style in STYLES


def write_traces(path: Path, traces: list[Trace]) -> None:
    write_records(path, [trace.to_dict() for trace in traces])


def test_written_and_appended_traces_read_back(tmp_path: Path, piqa: list[Trace]) -> None:
    path = tmp_path / "out" / "traces.jsonl"
    write_traces(path, piqa[:2])
    append_records(path, [piqa[2].to_dict()])
    assert read_traces(path) == piqa[:3]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_missing_file_has_a_hint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SCHEMA.md"):
        read_traces(tmp_path / "absent.jsonl")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty trace file"):
        read_traces(path)


def test_malformed_json_line_names_the_line(tmp_path: Path, piqa: list[Trace]) -> None:
    good = json.dumps(piqa[0].to_dict())
    path = _write_lines(tmp_path / "bad.jsonl", [good, good[:-20]])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        read_traces(path)


def test_blank_line_is_not_skipped(tmp_path: Path, piqa: list[Trace]) -> None:
    path = _write_lines(tmp_path / "blank.jsonl", [json.dumps(piqa[0].to_dict()), "", json.dumps(piqa[1].to_dict())])
    with pytest.raises(ValueError, match="line 2: blank line"):
        read_traces(path)


def test_missing_field(tmp_path: Path, piqa: list[Trace]) -> None:
    record = piqa[0].to_dict()
    del record["answer"]
    path = _write_lines(tmp_path / "missing.jsonl", [json.dumps(record)])
    with pytest.raises(ValueError, match=r"line 1: missing field\(s\) 'answer'"):
        read_traces(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("index", "0", "field 'index' must be an integer, got a string"),
        ("index", True, "field 'index' must be an integer, got a boolean"),
        ("steps", "one long step", "field 'steps' must be a list"),
        ("steps", ["fine", 3], "field 'steps' must be a list of strings"),
        ("provenance", {"teacher": "x"}, "provenance field 'prompt_version'"),
        ("style", "freestyle", "unknown style 'freestyle'"),
        ("task", "mmlu", "unknown task 'mmlu'"),
        ("split", "test", "unknown split 'test'"),
    ],
)
def test_schema_violations_name_field_and_line(tmp_path: Path, piqa: list[Trace], field: str, value: object,
                                               message: str) -> None:
    good = piqa[0].to_dict()
    bad = {**piqa[1].to_dict(), field: value}
    path = _write_lines(tmp_path / "schema.jsonl", [json.dumps(good), json.dumps(bad)])
    with pytest.raises(ValueError, match=re.escape(f"line 2: {message}")):
        read_traces(path)


def test_wrong_answer(piqa: list[Trace]) -> None:
    trace = piqa[0]
    conclusion, other = _with_other_letter(trace.steps[-1], trace.answer)
    wrong = dataclasses.replace(trace, steps=[*trace.steps[:-1], conclusion], answer=other)
    assert validate_traces([wrong]) == [
        f"{trace.label}: answer {wrong.answer!r} differs from the gold answer {trace.answer!r}"
    ]


def test_question_must_match_the_data(piqa: list[Trace]) -> None:
    trace = piqa[0]
    problems = validate_traces([dataclasses.replace(trace, question=trace.question.replace("jar", "bowl"))])
    assert len(problems) == 1 and "question differs" in problems[0]


def test_single_step(piqa: list[Trace]) -> None:
    trace = piqa[0]
    problems = validate_traces([dataclasses.replace(trace, steps=[trace.reasoning])])
    assert any("at least two non-empty steps" in problem for problem in problems)


def test_empty_step(piqa: list[Trace]) -> None:
    trace = piqa[0]
    problems = validate_traces([dataclasses.replace(trace, steps=[*trace.steps[:-1], " ", trace.steps[-1]])])
    assert problems == [f"{trace.label}: step {len(trace.steps)} is empty"]


def test_unrelated_reasoning(piqa: list[Trace]) -> None:
    trace = piqa[0]
    filler = ["The weather stayed mild all week, and the local team won its match on Sunday.",
              "Many people enjoyed the long evenings outside."]
    problems = validate_traces([dataclasses.replace(trace, steps=filler + trace.steps[-1:])])
    assert len(problems) == 1 and "unrelated to the question" in problems[0]


def test_reasoning_pasted_from_another_item(piqa: list[Trace]) -> None:
    trace, other = piqa[0], piqa[17]
    assert trace.answer == other.answer
    problems = validate_traces([dataclasses.replace(trace, steps=other.steps)])
    assert any("unrelated to the question" in problem for problem in problems)


def test_conclusion_naming_another_letter(piqa: list[Trace]) -> None:
    trace = piqa[0]
    conclusion, other = _with_other_letter(trace.steps[-1], trace.answer)
    problems = validate_traces([dataclasses.replace(trace, steps=[*trace.steps[:-1], conclusion])])
    expected = f"{trace.label}: reasoning names {other} as the answer but the trace's answer is {trace.answer}"
    assert problems == [expected]


def test_near_duplicate_pair_despite_style_markers(piqa: list[Trace]) -> None:
    trace = piqa[5]
    numbered = [f"Step {number}: {step}" for number, step in enumerate(trace.steps, start=1)]
    copy = dataclasses.replace(trace, style="stepwise", steps=numbered)
    problems = validate_traces([trace, copy])
    assert len(problems) == 1
    assert "near-duplicates" in problems[0] and trace.label in problems[0] and copy.label in problems[0]


def test_lightly_edited_copy_is_a_near_duplicate(piqa: list[Trace]) -> None:
    trace = piqa[6]
    edited = [step.replace("freezes", "turns") for step in trace.steps]
    problems = validate_traces([trace, dataclasses.replace(trace, style="causal_chain", steps=edited)])
    assert len(problems) == 1 and "near-duplicates" in problems[0]


def test_duplicate_key(piqa: list[Trace]) -> None:
    trace = piqa[3]
    problems = validate_traces([trace, trace])
    assert f"{trace.label} appears 2 times" in problems


def test_cli_reports_counts_and_problems(tmp_path: Path, piqa: list[Trace], capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "good.jsonl"
    write_traces(good, piqa[:3])
    assert main(["traces", "validate", str(good)]) == 0
    output = capsys.readouterr().out
    assert "3 traces" in output and "piqa / default: 3" in output and "OK" in output

    bad = tmp_path / "bad.jsonl"
    write_traces(bad, [piqa[0], dataclasses.replace(piqa[1], steps=piqa[1].steps[:1])])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(["traces", "validate", str(good), str(bad), str(empty)]) == 1
    output = capsys.readouterr().out
    assert "PROBLEM piqa/train#1 (default)" in output and "empty trace file" in output
