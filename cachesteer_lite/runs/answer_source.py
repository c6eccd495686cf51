"""Who chose a multiple-choice answer: the response itself, or the extraction step that reads it.

The paper's protocol, which the runner follows, appends "So the correct choice is" to every response and lets the
unsteered model continue for a few tokens. Over response, suffix and continuation, the first answer pattern with a
match wins and its last match counts; a text with no match gets the forced choice (the unsteered model's most
likely option letter). So the continuation decides whenever it names a letter, even when the response already
stated one, and a response that loops or never answers is scored by the unsteered model's pick after reading it.

:func:`answer_sources` measures, from a run's stored records alone (no model), how much of its accuracy the
responses earned by themselves: how many state an answer (the letter the same patterns read from the response
alone), how accurate those stated answers are, and how often the extraction step overrode one, in which direction.
It also sets apart the stated answers that only the protocol's weakest pattern reads, a response that opens with a
letter and a colon: mostly "A:", the model starting to copy out the options, so such an "answer" is right about as
often as a guess. The accuracy by an answer phrase alone ("the answer is C", ...) leaves them out.
:func:`source_table` does it for every stored multiple-choice run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..tasks.scoring import INCORRECT, INVALID, OPENING_LETTER, match_choice
from ..tasks.task import get_task
from .results import collect, load_run


@dataclass(frozen=True)
class AnswerSources:
    """Where the answers of one run came from (counts over its items)."""

    n: int
    correct: int               # right by the paper's protocol (the stored score)
    stated: int                # responses that state an answer by themselves
    stated_correct: int        # ... and state the gold one: right with the response alone
    overridden_to_gold: int    # stated a wrong answer; the extraction step made it right
    overridden_from_gold: int  # stated the gold answer; the extraction step made it wrong
    overridden_other: int      # stated a wrong answer; the extraction step picked another wrong one
    correct_unstated: int      # right, though the response stated no answer: the extraction step's pick
    opening_only: int          # stated answers read only from an opening "X:" (mostly "A:", the options copied out)
    opening_only_correct: int  # ... that are the gold answer

    @property
    def phrase_correct(self) -> int:
        """Right by an answer phrase in the response alone, leaving out the bare opening letters."""
        return self.stated_correct - self.opening_only_correct

    @property
    def from_extraction(self) -> int:
        """Right answers that the response did not give: unstated, or overridden to the gold letter."""
        return self.correct_unstated + self.overridden_to_gold


def stated_answer_and_pattern(response: str) -> tuple[str | None, str]:
    """The option letter a response states by itself (the protocol's patterns on the response alone), or None, and
    the name of the pattern that read it."""
    letter, pattern = match_choice(response)
    return (None if letter in (INVALID, INCORRECT) else letter), pattern


def stated_answer(response: str) -> str | None:
    """The option letter a response states by itself, or None."""
    return stated_answer_and_pattern(response)[0]


def answer_sources(records: Mapping[Any, Mapping[str, Any]]) -> AnswerSources:
    """Count, over a run's records (each with ``response``, ``gold``, ``prediction`` and ``correct``), where its
    answers came from."""
    counts = dict.fromkeys(("correct", "stated", "stated_correct", "overridden_to_gold", "overridden_from_gold",
                            "overridden_other", "correct_unstated", "opening_only", "opening_only_correct"), 0)
    for record in records.values():
        stated, pattern = stated_answer_and_pattern(record["response"])
        gold, final = record["gold"], record["prediction"]
        counts["correct"] += bool(record["correct"])
        if stated is None:
            counts["correct_unstated"] += bool(record["correct"])
            continue
        counts["stated"] += 1
        counts["stated_correct"] += stated == gold
        if pattern == OPENING_LETTER:
            counts["opening_only"] += 1
            counts["opening_only_correct"] += stated == gold
        if final != stated:
            key = "overridden_from_gold" if stated == gold else (
                "overridden_to_gold" if final == gold else "overridden_other")
            counts[key] += 1
    return AnswerSources(n=len(records), **counts)


def source_table(results: Sequence[dict[str, Any]] | None = None, model: str = "smollm2-135m-instruct") -> str:
    """A Markdown table of :func:`answer_sources` for every stored multiple-choice run of ``model``, beside the
    accuracy by the paper's protocol."""
    lines = ["| task | method | accuracy, paper's protocol % | responses that state an answer % | responses that "
             "state one only by an opening \"X:\" % | accuracy, the response alone % | accuracy, an answer phrase "
             "alone % | right only through the extraction step | stated answer overridden: to gold / away from gold "
             "/ other |",
             "|---" * 9 + "|"]
    for result in collect(model=model) if results is None else results:
        if get_task(result["task"]).numeric:  # GSM8K: a number, no extraction step of this kind
            continue
        sources = answer_sources(load_run(result["run_dir"]).records)
        lines.append(f"| {result['task']} | {result['method']} | {100 * sources.correct / sources.n:.1f} | "
                     f"{100 * sources.stated / sources.n:.0f} | {100 * sources.opening_only / sources.n:.0f} | "
                     f"{100 * sources.stated_correct / sources.n:.1f} | "
                     f"{100 * sources.phrase_correct / sources.n:.1f} | "
                     f"{sources.from_extraction} of {sources.correct} | {sources.overridden_to_gold} / "
                     f"{sources.overridden_from_gold} / {sources.overridden_other} |")
    return "\n".join(lines)
