"""The four tasks of the paper, each described once.

A :class:`Task` holds everything that differs between GSM8K, ARC-Challenge, CommonsenseQA and PIQA: their
splits, the split the paper evaluates on, where steering settings are chosen, the chance level, the offset token
cache steering appends, whether answers are numbers or option letters, the Hugging Face source, how a raw row
becomes a question, and where the reasoning of the demonstrations comes from. Code that needs one of these asks
the task, never its name: a name is turned into a :class:`Task` once, at the boundary, by :func:`get_task`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

LETTERS = "ABCDEFGH"


class Question(NamedTuple):
    """A raw row formatted as the paper formats it: the question text, the gold answer (an option letter or a
    number as a string), the option texts (none for GSM8K) and the row's id (if it has one)."""

    text: str
    answer: str
    choices: tuple[str, ...] = ()
    source_id: str = ""


@dataclass(frozen=True)
class Task:
    """One task of the paper. ``held_out_split`` is where steering settings are chosen, never the evaluation
    split: ARC's validation split from its first item, otherwise the train items after the contrastive pool.
    ``solution`` reads a worked solution from a train row, for the tasks whose data has one (GSM8K); the other
    tasks take their demonstrations' reasoning from a trace file."""

    name: str
    title: str
    splits: tuple[str, ...]
    eval_split: str
    held_out_split: str
    chance: float
    offset: str
    numeric: bool
    hub: Mapping[str, str]
    format_row: Callable[[dict], Question]
    solution: Callable[[dict], str] | None = None

    def check_split(self, split: str) -> str:
        """``split`` itself, after checking that the task has it (the error names the valid splits)."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; valid splits: {', '.join(self.splits)}")
        return split

    def held_out_start(self, pool_size: int) -> int:
        """The first held-out item: after the ``pool_size`` contrastive items when they share the train split."""
        return pool_size if self.held_out_split == "train" else 0


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


def multiple_choice(question: str, texts: list[str], gold: int, source_id: str = "", *, header: bool) -> Question:
    """The question with its lettered options (after a "Choices:" header when ``header``) and the gold letter."""
    lines = [f"{LETTERS[i]}: {text}" for i, text in enumerate(texts)]
    body = f"{question}\n\nChoices:\n" + "\n".join(lines) if header else question + "\n" + "\n".join(lines)
    return Question(body, LETTERS[gold], tuple(texts), source_id)


def _gsm8k(row: dict) -> Question:
    return Question(row["question"], gsm8k_final_number(row["answer"]))


def _labelled_choices(row: dict, header: bool) -> Question:
    """ARC and CSQA rows. ARC items whose labels are 1-4 are shown with letters A-D (the paper kept the digits and
    could never score them); the gold letter follows the position of ``answerKey`` in ``choices.label``."""
    choices = row["choices"]
    gold = list(choices["label"]).index(row["answerKey"])
    return multiple_choice(row["question"], list(choices["text"]), gold, row.get("id", ""), header=header)


def _piqa(row: dict) -> Question:
    return multiple_choice(row["goal"], [row["sol1"], row["sol2"]], int(row["label"]), header=True)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("gsm8k", "GSM8K", ("train", "test"), "test", "train", 0.0, " ", True,
             {"path": "openai/gsm8k", "name": "main"}, _gsm8k, solution=lambda row: gsm8k_reasoning(row["answer"])),
        # ARC-Challenge has a few 3- and 5-option questions; 4 options are the rule.
        Task("arc_challenge", "ARC-Challenge", ("train", "validation", "test"), "test", "validation", 0.25, "\n",
             False, {"path": "allenai/ai2_arc", "name": "ARC-Challenge"},
             lambda row: _labelled_choices(row, header=True)),
        # CSQA's test labels were never released: the paper evaluates on validation. No "Choices:" header.
        Task("csqa", "CommonsenseQA", ("train", "validation"), "validation", "train", 0.2, "\n", False,
             {"path": "tau/commonsense_qa"}, lambda row: _labelled_choices(row, header=False)),
        # ybisk/piqa is a script dataset that datasets>=4 refuses; its parquet conversion loads.
        Task("piqa", "PIQA", ("train", "validation"), "validation", "train", 0.5, "\n", False,
             {"path": "ybisk/piqa", "revision": "refs/convert/parquet"}, _piqa),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(task: str | Task) -> Task:
    """The task of that name (a :class:`Task` is returned as it is); a ValueError names the valid tasks."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[task]
