"""Task data: GSM8K, ARC-Challenge, CommonsenseQA and PIQA as uniform question items.

Rows come from a directory of JSONL files in the Hugging Face row layout when the environment variable
``CACHESTEER_DATA_DIR`` names one (tests and CI point it at ``../shared/data``), otherwise from the
Hugging Face hub through ``datasets``. Each row becomes an :class:`Item` whose ``question`` is formatted
exactly as the paper formats it (paper-reference section 2.1).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR_ENV = "CACHESTEER_DATA_DIR"

TASKS: tuple[str, ...] = ("gsm8k", "arc_challenge", "csqa", "piqa")
SPLITS: dict[str, tuple[str, ...]] = {
    "gsm8k": ("train", "test"),
    "arc_challenge": ("train", "validation", "test"),
    "csqa": ("train", "validation"),
    "piqa": ("train", "validation"),
}
# The paper evaluates on these splits (CSQA and PIQA test labels were never released).
EVAL_SPLITS: dict[str, str] = {"gsm8k": "test", "arc_challenge": "test", "csqa": "validation", "piqa": "validation"}
# Accuracy of guessing: one over the number of options (ARC-Challenge has a few 3- and 5-option questions; 4 is
# the rule). GSM8K's free-form answers have no guessing level.
CHANCE: dict[str, float] = {"gsm8k": 0.0, "arc_challenge": 0.25, "csqa": 0.2, "piqa": 0.5}

_HUB_SOURCES: dict[str, dict] = {
    "gsm8k": {"path": "openai/gsm8k", "name": "main"},
    "arc_challenge": {"path": "allenai/ai2_arc", "name": "ARC-Challenge"},
    "csqa": {"path": "tau/commonsense_qa"},
    # ybisk/piqa is a script dataset that datasets>=4 refuses; its parquet conversion loads.
    "piqa": {"path": "ybisk/piqa", "revision": "refs/convert/parquet"},
}

_LETTERS = "ABCDEFGH"


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
        return tuple(_LETTERS[: len(self.choices)])


def check_task(task: str, split: str | None = None) -> None:
    """Raise a ValueError naming the valid choices when ``task`` (or ``split``) is unknown."""
    if task not in SPLITS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if split is not None and split not in SPLITS[task]:
        raise ValueError(f"unknown split {split!r} for task {task!r}; valid splits: {', '.join(SPLITS[task])}")


def data_dir() -> Path | None:
    """The configured local data directory, or None to use the hub."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def load_rows(task: str, split: str, limit: int | None = None) -> list[dict]:
    """Raw rows of ``task``/``split`` in Hugging Face row layout, in upstream order."""
    check_task(task, split)
    directory = data_dir()
    if directory is not None:
        path = directory / f"{task}_{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (${DATA_DIR_ENV}={directory})")
        rows = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
        return rows
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"set ${DATA_DIR_ENV} to a directory of JSONL files, or `pip install datasets` to load from the hub"
        ) from error
    source = dict(_HUB_SOURCES[task])
    split_spec = split if limit is None else f"{split}[:{limit}]"
    try:
        rows = datasets.load_dataset(**source, split=split_spec)
    except (ConnectionError, OSError) as error:
        raise ConnectionError(
            f"could not load {task}/{split} from the Hugging Face hub ({source['path']}): {error}. Offline, set "
            f"${DATA_DIR_ENV} to a directory of JSONL files in the Hugging Face row layout"
        ) from error
    return [dict(row) for row in rows]


def gsm8k_final_number(solution: str) -> str:
    """The gold number after ``####`` in a GSM8K solution, without thousands separators."""
    return solution.split("####")[-1].strip().replace(",", "")


def gsm8k_reasoning(solution: str) -> str:
    """A GSM8K train solution as reasoning text, exactly as the paper builds it: the text before ``####``
    with newlines turned into spaces, ``<<...>>`` calculator tags removed, and the ends stripped.

    Inner whitespace is kept as it is (one of the 2000 local train solutions has a double space), so the
    demonstrations match the paper's token for token.
    """
    body = solution.split("####")[0].replace("\n", " ")
    return re.sub(r"<<.*?>>", "", body).strip()


def _multiple_choice(question: str, texts: list[str], gold: int, header: bool) -> tuple[str, str, tuple[str, ...]]:
    """The question with its lettered options (after a "Choices:" header when ``header``), the gold letter
    and the option texts."""
    lines = [f"{_LETTERS[i]}: {text}" for i, text in enumerate(texts)]
    body = f"{question}\n\nChoices:\n" + "\n".join(lines) if header else question + "\n" + "\n".join(lines)
    return body, _LETTERS[gold], tuple(texts)


def to_item(task: str, split: str, index: int, row: dict) -> Item:
    """Format one raw row as the paper does.

    ARC items whose labels are 1-4 are shown with letters A-D (the paper kept the digits and could never
    score them); the gold letter follows the position of ``answerKey`` in ``choices.label``.
    """
    check_task(task, split)
    if task == "gsm8k":
        return Item(task, split, index, row["question"], gsm8k_final_number(row["answer"]), raw=row)
    if task == "piqa":
        body, gold, texts = _multiple_choice(row["goal"], [row["sol1"], row["sol2"]], int(row["label"]), header=True)
        return Item(task, split, index, body, gold, texts, raw=row)
    choices = row["choices"]
    gold_index = list(choices["label"]).index(row["answerKey"])
    header = task == "arc_challenge"  # CSQA has no "Choices:" header in the paper's format
    body, gold, texts = _multiple_choice(row["question"], list(choices["text"]), gold_index, header=header)
    return Item(task, split, index, body, gold, texts, source_id=row.get("id", ""), raw=row)


def load_items(task: str, split: str | None = None, limit: int | None = None, start: int = 0) -> list[Item]:
    """Items ``start`` to ``start + limit`` of ``task``/``split`` (default: the paper's evaluation split),
    formatted for prompting. Each item keeps its row index in the split, whatever ``start`` is.
    """
    check_task(task)
    split = split or EVAL_SPLITS[task]
    check_task(task, split)
    if start < 0 or (limit is not None and limit < 0):
        raise ValueError(f"start and limit must not be negative, got start={start}, limit={limit}")
    rows = load_rows(task, split, None if limit is None else start + limit)
    return [to_item(task, split, i, rows[i]) for i in range(start, len(rows))]
