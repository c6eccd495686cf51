"""Task data: the rows of GSM8K, ARC-Challenge, CommonsenseQA and PIQA as uniform question items.

Rows come from a directory of JSONL files in the Hugging Face row layout when the environment variable
``CACHESTEER_DATA_DIR`` names one (tests and CI point it at ``../shared/data``), otherwise from the
Hugging Face hub through ``datasets``. Each row becomes an :class:`Item` whose ``question`` is formatted
exactly as the paper formats it (paper-reference section 2.1, :attr:`Task.format_row`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.deviations import Deviation
from .task import LETTERS, Task, get_task

DATA_DIR_ENV = "CACHESTEER_DATA_DIR"

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "ARC answer labels",
        "about 2% of ARC items use labels 1–4; the paper kept the digits, which its answer patterns (A–E) could "
        "never score",
        "mapped to the letters A–D by their position in the choices",
        "those items can be answered and scored",
    ),
)


@dataclass(frozen=True)
class Item:
    """One question of a task, formatted as the paper formats it.

    ``choices`` holds the answer options (empty for GSM8K); ``answer`` is the gold letter (A, B, ...)
    for multiple choice and the gold number as a string for GSM8K.
    """

    task: str
    split: str
    index: int
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    source_id: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """The option letters shown in the prompt (A, B, ...)."""
        return tuple(LETTERS[: len(self.choices)])


def data_dir() -> Path | None:
    """The configured local data directory, or None to use the hub."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def _local_rows(path: Path, limit: int | None) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (${DATA_DIR_ENV}={path.parent})")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _hub_rows(task: Task, split: str, limit: int | None) -> list[dict]:
    try:
        import datasets  # optional: only needed without a local data directory
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"set ${DATA_DIR_ENV} to a directory of JSONL files, or `pip install datasets` to load from the hub"
        ) from error
    split_spec = split if limit is None else f"{split}[:{limit}]"
    try:
        rows = datasets.load_dataset(**task.hub, split=split_spec)
    except (ConnectionError, OSError) as error:
        raise ConnectionError(
            f"could not load {task.name}/{split} from the Hugging Face hub ({task.hub['path']}): {error}. Offline, "
            f"set ${DATA_DIR_ENV} to a directory of JSONL files in the Hugging Face row layout"
        ) from error
    return [dict(row) for row in rows]


def load_rows(task: str | Task, split: str, limit: int | None = None) -> list[dict]:
    """Raw rows of ``task``/``split`` in Hugging Face row layout, in upstream order."""
    task = get_task(task)
    task.check_split(split)
    directory = data_dir()
    if directory is not None:
        return _local_rows(directory / f"{task.name}_{split}.jsonl", limit)
    return _hub_rows(task, split, limit)


def to_item(task: str | Task, split: str, index: int, row: dict) -> Item:
    """Format one raw row as the paper does (:attr:`Task.format_row`)."""
    task = get_task(task)
    question = task.format_row(row)
    return Item(task.name, task.check_split(split), index, question.text, question.answer, question.choices,
                question.source_id, raw=row)


def load_items(task: str | Task, split: str | None = None, limit: int | None = None, start: int = 0) -> list[Item]:
    """Items ``start`` to ``start + limit`` of ``task``/``split`` (default: the paper's evaluation split),
    formatted for prompting. Each item keeps its row index in the split, whatever ``start`` is.
    """
    task = get_task(task)
    split = task.check_split(split or task.eval_split)
    if start < 0 or (limit is not None and limit < 0):
        raise ValueError(f"start and limit must not be negative, got start={start}, limit={limit}")
    rows = load_rows(task, split, None if limit is None else start + limit)
    return [to_item(task, split, i, rows[i]) for i in range(start, len(rows))]
