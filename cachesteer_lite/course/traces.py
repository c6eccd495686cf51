"""Checkers for notebook 2, "Reasoning traces from a teacher model".

The checkers read what the generator wrote to disk (the accepted file and its rejected sibling) rather than the
learner's in-memory lists, so they judge the run itself, and they never ask the teacher anything again.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..tasks.data import Item
from ..tasks.traces import read_traces
from ..teacher import RunReport, read_rejected, rejected_path
from .feedback import Feedback, checker, close, correct, wrong

INTACT_LINES = 3  # exercise 2: the torn copy keeps the first three lines of the file...
CUT_AT = 40  # ...and the first 40 characters of the fourth, then a newline, as a crash mid-write leaves it

Key = tuple[str, str, int]


def outcomes(out: str | Path, style: str) -> dict[Key, str]:
    """(task, split, index) -> "accepted" or the rejection reason's code, for every ``style`` record stored in the
    generator's output file ``out`` and its rejected sibling."""
    out = Path(out)
    found: dict[Key, str] = {}
    if out.is_file() and out.stat().st_size:
        found.update({(t.task, t.split, t.index): "accepted" for t in read_traces(out) if t.style == style})
    for record in read_rejected(rejected_path(out)):
        if record.trace.style == style:
            found[(record.trace.task, record.trace.split, record.trace.index)] = record.reason.split(":")[0]
    return found


def describe(counts: Counter[str]) -> str:
    """"2 accepted, 4 rejected (no_answer 1, wrong_answer 3)"."""
    reasons = sorted((code, n) for code, n in counts.items() if code != "accepted")
    detail = ", ".join(f"{code} {n}" for code, n in reasons) or "none"
    return f"{counts['accepted']} accepted, {sum(n for _, n in reasons)} rejected ({detail})"


@checker("answer_1 = the fraction of this run's replies that were accepted (a number between 0 and 1)")
def check_acceptance_rate(answer: float, out: str | Path, items: Sequence[Item]) -> Feedback:
    """Exercise 1: accepted replies over all replies, counted from the two files the run wrote."""
    counts = Counter(outcomes(out, "default").values())
    replies = sum(counts.values())
    if replies == 0:
        return wrong(f"the run stored no reply in {out} or its rejected file: run the generation cell first")
    expected = counts["accepted"] / replies
    answer = float(answer)
    if close(answer, expected, 1e-9) or (replies != len(items) and close(answer, counts["accepted"] / len(items))):
        return correct(f"{counts['accepted']} of {replies} replies were accepted ({expected:.0%}): "
                       f"{describe(counts)}. Every item ends in exactly one of the two files")
    if 1 < answer <= 100 and close(answer, 100 * expected, 1e-9):
        return wrong("that is a percentage: give the fraction, between 0 and 1")
    if close(answer, 1 - expected, 1e-9):
        return wrong("that is the fraction *rejected*: count the traces in the accepted file (`accepted`)")
    if answer == counts["accepted"] and replies > 1:
        return wrong(f"that is the number of accepted traces: divide it by the number of replies ({replies})")
    return wrong(f"divide the number of accepted traces (`len(accepted)`) by the number of replies: every one of "
                 f"the {len(items)} items ends either in the accepted file or in the rejected one")


def torn_copy(source: str | Path, folder: str | Path) -> Path:
    """A copy of the trace file ``source`` as a crash mid-write leaves it: its first INTACT_LINES lines, then the
    first CUT_AT characters of the next one."""
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    path = Path(folder) / "broken.jsonl"
    path.write_text("\n".join(lines[:INTACT_LINES] + [lines[INTACT_LINES][:CUT_AT]]) + "\n", encoding="utf-8")
    return path


def read_error(path: Path) -> str:
    """The message read_traces gives for ``path`` ("" when it reads the file without complaint)."""
    try:
        read_traces(path)
    except ValueError as error:
        return str(error)
    return ""


@checker("answer_2 = the line number that read_traces's error names (an int), or the error message itself")
def check_broken_file(answer: int | str | Exception, source: str | Path) -> Feedback:
    """Exercise 2: the checker tears its own copy of ``source`` the same way and reads the line number from the
    error. The usual slips: counting lines from 0, or cutting a line of the file other than the fourth."""
    with tempfile.TemporaryDirectory() as folder:
        message = read_error(torn_copy(source, folder))
    found = re.search(r", line (\d+): (.*)", message)
    if found is None:
        return wrong(f"the checker's own torn copy of {source} was read without error: is it a trace file?")
    line, reason = int(found.group(1)), found.group(2)
    explained = (f"read_traces refuses the whole file at line {line} ({reason}) rather than silently using the "
                 f"{line - 1} intact traces before it")
    if isinstance(answer, (str, Exception)):
        text = str(answer)
        if isinstance(answer, FileNotFoundError) or "no such trace file" in text:
            return wrong("that error says the file does not exist: write the torn copy first, then read that path")
        named = re.search(r"line (\d+)", text) or re.fullmatch(r"\s*(\d+)\s*", text)
        if named is None:
            return wrong("this message names no line: give the ValueError's message, or just the line number")
        answer = int(named.group(1))
    if isinstance(answer, bool) or not isinstance(answer, int):
        return wrong(f"give the line number as an int, not {type(answer).__name__}")
    if answer == line:
        return correct(explained)
    if answer == line - 1:
        return wrong(f"the error counts lines from 1: the torn line is lines[{INTACT_LINES}] in Python, line "
                     f"{line} in the message")
    return wrong(f"keep the first {INTACT_LINES} lines whole and cut the next one after {CUT_AT} characters "
                 "(nothing after it), then read the message of the ValueError: it names the line it could not parse")


@checker('answer_3 = the RunReport that generate_traces(..., style="causal_chain") returned for the same items')
def check_other_style(answer: RunReport, items: Sequence[Item], default_report: RunReport) -> Feedback:
    """Exercise 3, checked from the files the run wrote, without asking the teacher again: one causal-chain result
    per item, in a file of its own; the message compares the outcomes with the default run's, item by item."""
    if isinstance(answer, str):
        return wrong("that is the summary text: put the object generate_traces returned (a RunReport) in answer_3")
    if not isinstance(answer, RunReport):
        return wrong(f"expected the RunReport that generate_traces returns, got a {type(answer).__name__}")
    styled = outcomes(answer.out, "causal_chain")
    if not styled:
        if outcomes(answer.out, "default"):
            return wrong(f"{answer.out} holds default-style traces only: pass style=\"causal_chain\" (and a new "
                         "output file)")
        return wrong(f"no causal_chain result is stored in {answer.out} or its rejected file: did the run stop? "
                     "Restart the local server (server.ensure_running()) and call again: it resumes")
    if Path(answer.out).resolve() == Path(default_report.out).resolve():
        return wrong("write the causal_chain traces to a new output file (for example run_dir / "
                     "\"causal_chain.jsonl\"), not into the default run's file")
    wanted = {(item.task, item.split, item.index) for item in items}
    missing, extra = wanted - styled.keys(), styled.keys() - wanted
    if missing:
        return wrong(f"{len(missing)} of the {len(wanted)} items have no causal_chain result yet (the run stopped "
                     "early?): call generate_traces again with the same arguments; it requests only what is missing")
    if extra:
        return wrong(f"the file holds causal_chain results for {len(extra)} other item(s): ask about the same "
                     "`items` as the default run, so the two can be compared item by item")
    default = outcomes(default_report.out, "default")
    new, old = Counter(styled[key] for key in wanted), Counter(default.get(key, "missing") for key in wanted)
    changed = sorted(code for code in new.keys() | old.keys() if new[code] != old[code])
    moved = sum(styled[key] != default.get(key) for key in wanted)
    difference = (", ".join(f"{code} {old[code]} -> {new[code]}" for code in changed) if changed
                  else "the same counts")
    return correct(f"causal_chain: {describe(new)}; default: {describe(old)}. Changed: {difference}; {moved} of "
                   f"{len(wanted)} items have another outcome. The answer checks are the same for every style: "
                   "whether a reply follows the style is measured separately (notebook 7)")
