"""The offline training text of cache augmentation: worked solutions of the four tasks' train items.

GSM8K train questions with their human solutions (calculator annotations removed) and the train questions of
ARC-Challenge, CommonsenseQA and PIQA, each with its shipped traces (``data/traces/*.jsonl``, train split only)
when it has any; one document per item, duplicates dropped, and a seeded held-out share of every source's items
that training never sees.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..files import book_folder
from ..tasks.data import load_items
from ..tasks.task import TASKS
from ..tasks.traces import read_traces

TRACES_FOLDER = "data/traces"

@dataclass(frozen=True)
class Document:
    """One text: a train-split item of ``source`` (a task) with its worked solution(s) when it has any."""

    source: str
    index: int
    text: str


class TextSplit(NamedTuple):
    """Documents to train on and held-out documents to evaluate on; no item and no text is in both."""

    train: list[Document]
    held_out: list[Document]


def _answer_line(reasoning: str, answer: str) -> str:
    return f"Answer: {reasoning} The answer is {answer}."


def reasoning_documents(traces_dir: str | Path | None = None) -> list[Document]:
    """Every train item of the four tasks as a document, exact duplicate texts dropped.

    A task with worked solutions in its data (GSM8K): question and solution (calculator annotations removed).
    ARC, CSQA, PIQA: the formatted question, then one answer line per trace of that item in
    ``traces_dir/*.jsonl`` (default: the book's ``data/traces``; train-split traces only: a trace of an
    evaluation item must never be trained on).
    """
    folder = Path(traces_dir) if traces_dir is not None else book_folder(TRACES_FOLDER, patterns=("*.jsonl",))
    if not folder.is_dir():
        raise FileNotFoundError(f"trace folder {folder} not found")
    traces = [trace for path in sorted(folder.glob("*.jsonl")) for trace in read_traces(path)]
    solutions: dict[tuple[str, int], list[str]] = defaultdict(list)
    for trace in traces:
        if trace.split == "train":
            solutions[(trace.task, trace.index)].append(_answer_line(trace.reasoning, trace.answer))
    documents = []
    for task in TASKS.values():
        for item in load_items(task, "train"):
            if task.solution is not None:
                lines = [_answer_line(task.solution(item.raw), item.answer)]
            else:
                lines = solutions[(task.name, item.index)]
            documents.append(Document(task.name, item.index, "\n".join([f"Question: {item.question}", *lines])))
    unique: dict[str, Document] = {}
    for document in documents:
        unique.setdefault(document.text, document)
    return list(unique.values())


def split_documents(documents: Sequence[Document], held_out_fraction: float = 0.05, seed: int = 0) -> TextSplit:
    """Hold out a seeded ``held_out_fraction`` of every source's documents (at least one each).

    The held-out list is shuffled across sources, so its first few documents are a mixed sample.
    """
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be between 0 and 1, got {held_out_fraction}")
    by_source: dict[str, list[Document]] = defaultdict(list)
    for document in documents:
        by_source[document.source].append(document)
    train: list[Document] = []
    held_out: list[Document] = []
    for source in sorted(by_source):
        ordered = sorted(by_source[source], key=lambda document: document.index)
        random.Random(f"{seed}:{source}").shuffle(ordered)
        n_held = max(1, round(held_out_fraction * len(ordered)))
        held_out += ordered[:n_held]
        train += ordered[n_held:]
    random.Random(f"{seed}:held-out").shuffle(held_out)
    return TextSplit(train, held_out)


def training_texts(
    held_out_fraction: float = 0.05, seed: int = 0, traces_dir: str | Path | None = None
) -> TextSplit:
    """The offline training text of this project, split into train and held-out documents."""
    return split_documents(reasoning_documents(traces_dir), held_out_fraction, seed)
