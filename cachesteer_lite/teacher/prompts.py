"""What the teacher is asked, and how its reply is read: one prompt per reasoning style, and the parser and the
checks that decide whether a reply becomes a trace.

Each style's prompt (:data:`STYLE_INSTRUCTIONS`, versioned by :data:`PROMPT_VERSION`) asks for short steps, one
per line, and a last line "The answer is X.". The reply is parsed into steps and an answer
(:func:`parse_response`) and checked against the gold answer and the content checks of
:func:`tasks.traces.trace_problems` (:func:`rejection_reason`).
"""

from __future__ import annotations

import re

from openai.types.chat import ChatCompletionMessageParam

from ..tasks.data import Item
from ..tasks.scoring import first_number
from ..tasks.traces import STYLES, Trace, trace_problems

PROMPT_VERSION = "teacher-v1"

SYSTEM_PROMPT = (
    "You are a careful teacher. You write short, correct worked solutions to exam questions, "
    "in exactly the reasoning style you are asked for."
)
# What each style asks for; the openings match the markers of data/traces/SCHEMA.md so adherence can be measured.
STYLE_INSTRUCTIONS: dict[str, str] = {
    "default": (
        "Reason in plain sentences: say what the question asks, bring in the knowledge that decides it, "
        "rule out the wrong choices, and conclude with the correct one."
    ),
    "stepwise": (
        'Number every step, "Step 1: ...", "Step 2: ...", each a small move, and make the last step the conclusion.'
    ),
    "strategy_execution": (
        'Start with a line "Strategy: ..." that states your plan, carry it out in lines beginning "Execution: ..." '
        '(or "Carrying this out, ..."), and end with a line "Conclusion: ...".'
    ),
    "causal_chain": (
        "Write a chain of cause and effect in which each line follows from the one before: "
        '"Because ..., ...", "This causes ...", "As a result, ...", ending with "Therefore, ...".'
    ),
    "annotated_deduction": (
        "Write premises and inferences, each followed by a short bracketed note on where it comes from: "
        '"Fact: ... [given]", "So ... [from the fact above]", ending with the conclusion "... [conclusion]".'
    ),
    "analogical": (
        'Open with a familiar situation that works the same way ("Think of ..." or "Just like ..."), then map it '
        "back to the question step by step, and end by naming the correct choice."
    ),
}
_FORMAT = (
    "Write 3 to 6 short steps, one per line, in plain text: no title, no markdown, no blank lines. "
    'The last line must be exactly "The answer is X." where X is {answer_form}.'
)

# US dollars per million (input, output) tokens, standard API prices published by OpenAI (2025). A dated
# snapshot ("gpt-4o-2024-08-06") costs what its family costs unless listed itself. Cached-input discounts are

_BULLET = re.compile(r"^(?:[-*\u2022]\s+|\d{1,2}[.)]\s+)")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# "The answer is B.", "Final answer: 42", "So the correct answer is (C): ...": group 'lead' is what comes before.
_ANSWER_PHRASE = re.compile(
    r"(?P<lead>.*?)\b(?:the\s+)?(?:final\s+|correct\s+|best\s+)?answer\s*(?:is\s*:?|:)\s*(?P<value>.*)$",
    re.IGNORECASE,
)
_LETTER = re.compile(r"^(?:(?i:option|choice)\s+)?[(\[\"'*]*([A-H])(?![A-Za-z])")


def build_messages(item: Item, style: str = "default") -> list[ChatCompletionMessageParam]:
    """The chat messages that ask the teacher for a ``style`` trace of ``item`` (the gold answer is not shown)."""
    if style not in STYLE_INSTRUCTIONS:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    if item.choices:
        answer_form = f"the letter of the correct choice ({', '.join(item.labels)})"
    else:
        answer_form = "the final number, digits only, with no units"
    instructions = f"Solve the question below. {STYLE_INSTRUCTIONS[style]}\n{_FORMAT.format(answer_form=answer_form)}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{instructions}\n\n{item.question}"},
    ]


def _clean_line(line: str) -> str:
    """A reply line without markdown emphasis, list bullets or list numbers ("Step 1:" markers are kept)."""
    return _BULLET.sub("", line.replace("**", "").strip()).strip()


def _answer_value(value: str, numeric: bool) -> str:
    """The letter (multiple choice) or number (GSM8K) at the start of what follows "answer is"; "" if none."""
    if not numeric:
        match = _LETTER.match(value.strip())
        return match.group(1) if match else ""
    return first_number(value) or ""


def _line_answer(line: str, numeric: bool) -> tuple[str, bool]:
    """The answer a line gives after "answer is" ("" if none), and whether the line is nothing but that answer."""
    match = _ANSWER_PHRASE.match(line)
    if match is None:
        return "", False
    answer = _answer_value(match.group("value"), numeric)
    return answer, bool(answer) and not match.group("lead").strip(" \t-:,.")


def parse_response(text: str, numeric: bool = False) -> tuple[list[str], str]:
    """Split a teacher reply into (steps, answer).

    The answer is read from the last non-empty line only, as the letter (or, with ``numeric``, the number)
    after "answer is" / "answer:"; it is "" when that line gives none. A last line that is only the answer
    ("The answer is B.") is not a step, nor is a repetition of it just before, since the contrastive builder
    appends " The answer is B." itself; a last line with reasoning before the phrase ("So the answer is B.")
    stays as the concluding step. A reply written as a single paragraph is read as one sentence per line.
    """
    lines = [cleaned for cleaned in map(_clean_line, text.splitlines()) if cleaned]
    if len(lines) == 1:
        lines = [sentence for sentence in _SENTENCE_BREAK.split(lines[0]) if sentence.strip()]
    answer = _line_answer(lines[-1], numeric)[0] if lines else ""
    while answer and lines and _line_answer(lines[-1], numeric) == (answer, True):
        lines.pop()  # the final answer line, and any repetition of it just before
    return lines, answer


def rejection_reason(item: Item, trace: Trace, finish_reason: str | None) -> str | None:
    """Why ``trace`` (parsed from a reply that ended with ``finish_reason``) cannot be kept; None to accept it.

    Each reason starts with a short code: ``refused``, ``truncated`` (cut off at max_tokens: even a final line
    may be incomplete, "1" of "18"), ``no_answer``, ``invalid_answer``, ``wrong_answer``, ``too_few_steps`` or
    ``invalid_trace`` (the other content checks of :func:`cachesteer_lite.tasks.traces.trace_problems`).
    """
    if finish_reason == "content_filter":
        return "refused: the endpoint withheld the reply (finish_reason=content_filter)"
    if finish_reason == "length":
        return "truncated: the reply was cut off at max_tokens before it ended"
    if not trace.answer:
        return 'no_answer: the last line gives no final answer ("The answer is X.")'
    if item.choices and trace.answer not in item.labels:
        return f"invalid_answer: {trace.answer!r} is not one of the choices {', '.join(item.labels)}"
    if trace.answer != item.answer:
        return f"wrong_answer: the reply answers {trace.answer!r}, the gold answer is {item.answer!r}"
    if len(trace.steps) < 2:
        return f"too_few_steps: {len(trace.steps)} reasoning step(s) before the answer, at least 2 needed"
    problems = trace_problems(trace)
    return f"invalid_trace: {'; '.join(problems)}" if problems else None
