"""Reasoning traces: the records of ``data/traces/*.jsonl``, reading them, and checking them.

A trace is one worked solution of one task item in one reasoning style (schema: ``data/traces/SCHEMA.md``).
The contrastive builder turns traces into demonstrations, so a wrong or careless trace silently teaches the
steering vector the wrong thing. :func:`read_traces` therefore refuses any line that breaks the schema, and
:func:`validate_traces` checks the content against the task data. Run the checks from the shell with::

    python -m cachesteer_lite traces validate data/traces/*.jsonl
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from .data import Item, load_rows, to_item
from .task import get_task

STYLES: tuple[str, ...] = (
    "default",
    "stepwise",
    "strategy_execution",
    "causal_chain",
    "annotated_deduction",
    "analogical",
)

# Schema field -> JSON type; the order is the order of the fields in the file.
_FIELD_TYPES: dict[str, type] = {
    "task": str,
    "split": str,
    "index": int,
    "source_id": str,
    "question": str,
    "steps": list,
    "answer": str,
    "style": str,
    "provenance": dict,
}
_PROVENANCE_TEXT_FIELDS: tuple[str, ...] = ("teacher", "prompt_version", "date")

# The steps before the conclusion must share at least this many distinct content words with the question
# and its choices (or all of the question's content words, when it has fewer).
MIN_SHARED_CONTENT_WORDS = 2
# Two traces whose steps have at least this Jaccard similarity of word 3-gram shingles are near-duplicates.
# Hand-written traces of different items score below 0.1; a copy with a word or two changed scores above 0.7.
NEAR_DUPLICATE_JACCARD = 0.5
SHINGLE_SIZE = 3

_WORD = re.compile(r"[a-z0-9]+")
# Words of four or more letters that carry no content of a question: function words, the prompt's
# "Choices:" header, conclusion boilerplate and the styles' fixed markers.
_STOPWORDS: frozenset[str] = frozenset(
    """
    about above after again against also although among another because been before being below between both
    cannot could does doing down during each either every from further have having here hers herself himself
    into itself just more most much must neither only other others ours over same should since some such than
    that their theirs them themselves then there therefore these they this those though through thus under
    unless until upon very want were what whatever when where whether which while whom whose will with within
    without would your yours yourself choice choices answer answers correct option options hence
    step steps strategy plan execution carrying fact given think like result causes
    """.split()
)
# The styles' fixed markers, removed before comparing traces so that shared scaffolding is not mistaken
# for shared content: "Step 2:", "Plan:", "[given]", ...
_STYLE_MARKERS = re.compile(
    r"\[[^\]]*\]|\bstep\s*\d+\s*[:.]|\b(?:strategy|plan|execution|fact|premise|inference|conclusion)\s*:",
    re.IGNORECASE,
)
# "the answer is C", "Answer: (C)", "the best choice is C", "option is C": the letter a step gives as the answer.
_NAMED_ANSWER = re.compile(r"\b(?i:answer|choice|option)(?:\s+is|\s*:)\s*[(\[\"']?([A-H])\b")


@dataclass(frozen=True)
class Trace:
    """One reasoning trace, a line of a trace file; constructing one checks the schema's types and vocabularies."""

    task: str
    split: str
    index: int
    source_id: str
    question: str
    steps: list[str]
    answer: str
    style: str
    provenance: dict

    def __post_init__(self) -> None:
        for name, expected in _FIELD_TYPES.items():
            value = getattr(self, name)
            # bool is an int in Python but never a valid index.
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"field {name!r} must be {_json_type(expected)}, got {_json_type(type(value))}")
        if not all(isinstance(step, str) for step in self.steps):
            raise ValueError("field 'steps' must be a list of strings")
        get_task(self.task).check_split(self.split)
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; valid styles: {', '.join(STYLES)}")
        _check_provenance(self.provenance)

    @classmethod
    def from_dict(cls, record: object) -> Trace:
        """Build a trace from a parsed JSON line, raising ValueError for missing, unexpected or mistyped fields."""
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {_json_type(type(record))}")
        missing = [name for name in _FIELD_TYPES if name not in record]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(map(repr, missing))} (schema: data/traces/SCHEMA.md)")
        unexpected = sorted(set(record) - set(_FIELD_TYPES))
        if unexpected:
            raise ValueError(f"unexpected field(s) {', '.join(map(repr, unexpected))} (schema: data/traces/SCHEMA.md)")
        return cls(**record)

    def to_dict(self) -> dict:
        """The trace as a JSON-ready dict in schema field order."""
        return asdict(self)

    @property
    def reasoning(self) -> str:
        """The steps joined with single spaces, as the contrastive builder uses them."""
        return " ".join(self.steps)

    @property
    def key(self) -> tuple[str, str, int, str]:
        """(task, split, index, style): a file holds at most one trace per key."""
        return (self.task, self.split, self.index, self.style)

    @property
    def label(self) -> str:
        """A short name for messages, e.g. ``piqa/train#3 (default)``."""
        return f"{self.task}/{self.split}#{self.index} ({self.style})"


def _json_type(python_type: type) -> str:
    """The JSON name of a Python type, for error messages written in the schema's vocabulary."""
    names = {str: "a string", int: "an integer", bool: "a boolean", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(python_type, python_type.__name__)


def _check_provenance(provenance: dict) -> None:
    """Raise ValueError unless provenance has text teacher/prompt_version/date and usage as an object or null."""
    for name in _PROVENANCE_TEXT_FIELDS:
        if not isinstance(provenance.get(name), str):
            raise ValueError(f"provenance field {name!r} must be a string")
    if "usage" not in provenance or not isinstance(provenance["usage"], (dict, type(None))):
        raise ValueError("provenance field 'usage' must be an object (token counts) or null")


def read_traces(path: str | Path) -> list[Trace]:
    """All traces of a JSONL trace file, in file order.

    Every line must hold one valid trace: a blank line, a line that is not JSON or a line that breaks the
    schema raises ValueError naming the file and line number, so a damaged file is never half-read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trace file (trace files are data/traces/*.jsonl, "
                                f"one JSON object per line; see data/traces/SCHEMA.md)")
    raw_lines = path.read_bytes().split(b"\n")  # JSON Lines end lines with "\n" only (U+2028 may sit in a string)
    if raw_lines[-1] == b"":
        raw_lines.pop()
    if not raw_lines:
        raise ValueError(f"{path}: empty trace file; expected one JSON trace per line")
    traces = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {number}: not UTF-8 text ({error.reason})") from None
        if not line.strip():
            raise ValueError(f"{path}, line {number}: blank line; every line must hold one JSON trace")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno})") from None
        try:
            traces.append(Trace.from_dict(record))
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: {error}") from None
    return traces


def content_words(text: str) -> set[str]:
    """Distinct lowercase words and numbers of four or more characters that are not stopwords, plural "s" dropped.

    Numbers count because in science and arithmetic questions they are the content ("1/1000"); the length
    floor keeps short, common ones like "10" out. Dropping the "s" lets "bottles" match "bottle" without a stemmer.
    """
    words = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 4 or word in _STOPWORDS:
            continue
        words.add(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def _shingles(trace: Trace) -> set[tuple[str, ...]]:
    """Word 3-grams of the lowercased steps with the styles' fixed markers removed."""
    words = _WORD.findall(_STYLE_MARKERS.sub(" ", trace.reasoning).lower())
    return {tuple(words[i : i + SHINGLE_SIZE]) for i in range(max(len(words) - SHINGLE_SIZE + 1, 0))}


def jaccard(first: set, second: set) -> float:
    """|A & B| / |A | B|, 0.0 for two empty sets."""
    union = first | second
    return len(first & second) / len(union) if union else 0.0


class _GoldItems:
    """The data items traces refer to, each task/split loaded once."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[dict]] = {}

    def get(self, trace: Trace) -> Item | None:
        """The item ``trace`` is about, or None when its index is outside the split."""
        rows = self._rows.get((trace.task, trace.split))
        if rows is None:
            rows = self._rows[(trace.task, trace.split)] = load_rows(trace.task, trace.split)
        if not 0 <= trace.index < len(rows):
            return None
        return to_item(trace.task, trace.split, trace.index, rows[trace.index])


def _gold_problems(trace: Trace, item: Item | None) -> list[str]:
    """Mismatches between the trace and the data item it claims to solve."""
    if item is None:
        return [f"index {trace.index} is outside the {trace.task} {trace.split} split"]
    problems = []
    if trace.answer != item.answer:
        problems.append(f"answer {trace.answer!r} differs from the gold answer {item.answer!r}")
    if trace.question != item.question:
        problems.append("question differs from the formatted data item "
                        "(cachesteer_lite.tasks.data.to_item(...).question)")
    if trace.source_id != item.source_id:
        problems.append(f"source_id {trace.source_id!r} differs from the item's id {item.source_id!r}")
    return problems


def _step_problems(trace: Trace) -> list[str]:
    """At least two steps, none of them blank: a single step is an answer, not a chain of reasoning."""
    problems = []
    if len(trace.steps) < 2:
        problems.append(f"has {len(trace.steps)} step(s); at least two non-empty steps are required")
    problems += [f"step {number} is empty" for number, step in enumerate(trace.steps, start=1) if not step.strip()]
    return problems


def _relevance_problems(trace: Trace) -> list[str]:
    """The steps before the conclusion must share MIN_SHARED_CONTENT_WORDS content words with the question.

    Real reasoning names the things the question and its choices are about; filler text, or a trace pasted
    onto the wrong item, rarely does (among the PIQA traces, 97% of pairs of a trace with another item's
    question share fewer than two). The final step is left out because a conclusion that quotes the chosen
    option would otherwise vouch for any reasoning before it.
    """
    question_words = content_words(trace.question)
    body = trace.steps[:-1] if len(trace.steps) > 1 else trace.steps
    shared = content_words(" ".join(body)) & question_words
    needed = min(MIN_SHARED_CONTENT_WORDS, len(question_words))
    if len(shared) < needed:
        return [f"reasoning looks unrelated to the question: the steps before the conclusion share "
                f"{len(shared)} content word(s) ({', '.join(sorted(shared)) or 'none'}) with the question and "
                f"choices, at least {needed} needed"]
    return []


def _conclusion_problems(trace: Trace) -> list[str]:
    """No step may give another option letter as the answer (e.g. "the answer is C" when ``answer`` is B)."""
    if not re.fullmatch(r"[A-H]", trace.answer):
        return []
    named = sorted({match.group(1) for match in _NAMED_ANSWER.finditer(trace.reasoning)} - {trace.answer})
    return [f"reasoning names {letter} as the answer but the trace's answer is {trace.answer}" for letter in named]


def _duplicate_key_problems(traces: Sequence[Trace]) -> list[str]:
    """Each (task, split, index, style) may appear once."""
    counts = Counter(trace.key for trace in traces)
    return [f"{task}/{split}#{index} ({style}) appears {count} times" for (task, split, index, style), count
            in counts.items() if count > 1]


def _near_duplicate_problems(traces: Sequence[Trace]) -> list[str]:
    """Pairs of traces whose steps are near copies (shingle Jaccard >= NEAR_DUPLICATE_JACCARD)."""
    shingles = [_shingles(trace) for trace in traces]
    problems = []
    for (i, first), (j, second) in combinations(enumerate(traces), 2):
        similarity = jaccard(shingles[i], shingles[j])
        if similarity >= NEAR_DUPLICATE_JACCARD:
            problems.append(f"{first.label} and {second.label} are near-duplicates "
                            f"(steps' 3-gram Jaccard {similarity:.2f} >= {NEAR_DUPLICATE_JACCARD})")
    return problems


def trace_problems(trace: Trace) -> list[str]:
    """Problems of one trace that need no task data: too few or empty steps, reasoning unrelated to the
    question, a step naming another letter as the answer. The trace generator rejects traces that have any."""
    return _step_problems(trace) + _relevance_problems(trace) + _conclusion_problems(trace)


def validate_traces(traces: Sequence[Trace]) -> list[str]:
    """Human-readable problems with ``traces`` (an empty list means they are valid).

    Each trace must match its data item (answer = gold, question = formatted item, source_id = item id),
    have at least two non-empty steps, talk about the question's content, and never give another letter as
    the answer; across the traces, keys must be unique and no two traces near-duplicates.
    """
    gold = _GoldItems()
    problems = []
    for trace in traces:
        checks = _gold_problems(trace, gold.get(trace)) + trace_problems(trace)
        problems += [f"{trace.label}: {problem}" for problem in checks]
    return problems + _duplicate_key_problems(traces) + _near_duplicate_problems(traces)
