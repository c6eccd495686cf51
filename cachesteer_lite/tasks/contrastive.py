"""Contrastive prompt sets as the paper builds them (paper-reference section 2.2).

For each of the first N train items x of a task, a positive and a negative dialogue share the same k
demonstration questions, then x's own question and the generation prompt. Positive demonstrations answer
with reasoning + " The answer is X."; negative ones with " The answer is X." alone. The demonstrations come
from the same N-item pool, never x itself, and are either x's nearest neighbours by all-MiniLM-L6-v2
sentence embeddings (:mod:`embeddings`; nearest first) or a seeded random draw.

Reasoning: the task's own worked solutions where its data has them (GSM8K's train split, as the paper's
``gsm8k`` task); otherwise a trace file in the schema of ``data/traces/SCHEMA.md`` (default
``data/traces/{task}.jsonl``, a book file), which stands in for the paper's GPT-4o traces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ..core.deviations import Deviation
from ..core.prompts import Demonstration, contrastive_pair
from ..files import book_file, display_path
from .data import load_items
from .embeddings import embed
from .task import Task, get_task
from .traces import read_traces

SELECTIONS: tuple[str, ...] = ("nearest", "random")

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "Reasoning traces (ARC, CommonsenseQA, PIQA)",
        "GPT-4o / GPT-4o-mini traces of the first *N* training items (not distributed)",
        "traces in the same format written by the book's authors for the first 100 training items "
        "(`data/traces/{task}.jsonl`), plus a teacher-model generator",
        "*N* ≤ 100 until more traces are generated; the traces' wording differs",
    ),
    Deviation(
        "Ties between equally distant neighbours",
        "`numpy.argsort` (quicksort: tie order unspecified)",
        "stable order: equal distances keep the pool order",
        "the demonstrations of a pair are reproducible",
    ),
    Deviation(
        "Random demonstrations",
        "`random.sample` over the whole pool, re-drawn when *x* itself is drawn",
        "`random.Random(seed).sample` over the pool without *x*",
        "the same distribution, without re-draws: reproducible from the seed",
    ),
)


def default_traces_path(task: str | Task) -> Path:
    """The book's trace file of ``task``, ``data/traces/{task}.jsonl`` (downloaded on a pip install)."""
    return book_file(f"data/traces/{get_task(task).name}.jsonl")


def _trace_file(task: Task, traces: str | Path | None) -> Path:
    return Path(traces) if traces is not None else default_traces_path(task)


def trace_coverage(task: str | Task, traces: str | Path | None = None, style: str = "default") -> int | None:
    """How many leading train items (0, 1, 2, ...) have a ``style`` trace; None when the task needs no trace
    file (its data holds worked solutions, GSM8K)."""
    task = get_task(task)
    if task.solution is not None and traces is None:
        return None
    indices = {t.index for t in read_traces(_trace_file(task, traces))
               if (t.task, t.split, t.style) == (task.name, "train", style)}
    count = 0
    while count in indices:
        count += 1
    return count


def demonstration_pool(
    task: str | Task, n: int, traces: str | Path | None = None, style: str = "default"
) -> list[Demonstration]:
    """The first ``n`` train items of ``task`` as demonstrations, in Hugging Face order.

    A task with worked solutions in its data (GSM8K) uses them unless a trace file is given; every other task
    reads ``traces`` (default: :func:`default_traces_path`), which must hold a ``style`` trace for each of the
    first ``n`` train items, with the same formatted question as the data (a stale file is refused).
    """
    task = get_task(task)
    if n < 1:
        raise ValueError(f"the pool needs at least one item, got n={n}")
    items = load_items(task, "train", limit=n)
    if len(items) < n:
        raise ValueError(f"{task.name} train has only {len(items)} items, {n} requested")
    if task.solution is not None and traces is None:
        return [Demonstration(item.question, task.solution(item.raw), item.answer) for item in items]
    path = _trace_file(task, traces)
    found = {t.index: t for t in read_traces(path) if (t.task, t.split, t.style) == (task.name, "train", style)}
    missing = [item.index for item in items if item.index not in found]
    if missing:
        raise ValueError(
            f"{path} has {style!r} traces for {len(found)} {task.name} train items but not for item(s) "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}: use at most as many pairs as the file covers "
            f"(the first items in order), or generate more traces"
        )
    pool = []
    for item in items:
        trace = found[item.index]
        if trace.question != item.question:
            raise ValueError(f"{path}: the trace of {task.name} train item {item.index} has a different question "
                             "than the data; regenerate the trace file (python -m cachesteer_lite traces validate)")
        pool.append(Demonstration(item.question, trace.reasoning, trace.answer))
    return pool


def nearest_neighbours(embeddings: torch.Tensor, k: int) -> list[list[int]]:
    """For each row, the ``k`` other rows of smallest cosine distance, nearest first (ties in row order)."""
    n = embeddings.shape[0]
    _check_k(n, k)
    distances = 1 - embeddings @ embeddings.T
    neighbours = []
    for i in range(n):
        order = torch.sort(distances[i], stable=True).indices.tolist()
        neighbours.append([j for j in order if j != i][:k])
    return neighbours


def random_neighbours(n: int, k: int, seed: int) -> list[list[int]]:
    """For each of ``n`` items, ``k`` distinct other items drawn at random (reproducible from ``seed``)."""
    _check_k(n, k)
    rng = random.Random(seed)
    return [rng.sample([j for j in range(n) if j != i], k) for i in range(n)]


def _check_k(n: int, k: int) -> None:
    if not 0 <= k < n:
        raise ValueError(f"cannot choose {k} demonstrations other than the item itself from a pool of {n}; "
                         f"use fewer demonstrations or more pairs")


@dataclass(frozen=True)
class ContrastiveSet:
    """(positive, negative) prompt texts for the first N train items, and how they were built.

    ``demonstrations[i]`` lists the pool indices shown before target ``i``, in prompt order.
    """

    task: str
    pairs: list[tuple[str, str]]
    demonstrations: list[list[int]]
    settings: dict


def build_contrastive_set(
    tokenizer: PreTrainedTokenizerBase,
    task: str | Task,
    *,
    n_pairs: int,
    n_demonstrations: int,
    selection: str = "nearest",
    seed: int = 0,
    cot_prefix: bool = False,
    traces: str | Path | None = None,
    style: str = "default",
) -> ContrastiveSet:
    """The paper's contrastive pairs for the first ``n_pairs`` train items of ``task``.

    ``selection`` is "nearest" (all-MiniLM-L6-v2 neighbours, the paper's ``distance``) or "random"
    (seeded). With ``cot_prefix`` both prompts end in "Let's think step by step." (the paper's prefix
    variant, used with the CoT prompt at evaluation). ``style`` picks the traces of one reasoning style
    from ``traces`` (the style-transfer experiments: ``data/traces/arc_challenge_styles.jsonl``).
    """
    task = get_task(task)
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid selections: {', '.join(SELECTIONS)}")
    pool = demonstration_pool(task, n_pairs, traces, style)
    if selection == "nearest":
        neighbours = nearest_neighbours(embed([demo.question for demo in pool]), n_demonstrations)
    else:
        neighbours = random_neighbours(len(pool), n_demonstrations, seed)
    pairs = [
        contrastive_pair(tokenizer, [pool[j] for j in chosen], pool[i].question, cot_prefix)
        for i, chosen in enumerate(neighbours)
    ]
    settings = {
        "task": task.name,
        "n_pairs": n_pairs,
        "n_demonstrations": n_demonstrations,
        "selection": selection,
        "seed": seed if selection == "random" else None,
        "cot_prefix": cot_prefix,
        "style": style,
        "reasoning_source": f"{task.name} train solutions" if task.solution is not None and traces is None
        else display_path(_trace_file(task, traces)),
    }
    return ContrastiveSet(task.name, pairs, neighbours, settings)
