"""Batches built by length: prompts sorted longest first and grouped so that little of a batch is padding.

A left-padded batch costs as many token slots as its rows times its longest prompt. Cutting a longest-first order
into fixed chunks still mixes lengths when lengths are spread (a contrastive set's positive prompts are about twice
as long as its negatives; answer transcripts run from a few tokens to hundreds), so a batch here grows only while

* it has at most ``max_rows`` rows,
* its token slots (rows x (longest prompt + ``extra`` tokens to come)) stay within ``token_budget``, and
* its real tokens fill at least ``min_efficiency`` of its prompt slots.

A prompt longer than the budget runs alone. Which prompts share a batch never changes what each one computes
(left padding is masked and positions count from each row's first real token), so results equal one-at-a-time
runs up to float32 batching noise: the library's oracle tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .checks import finite_number, integer

MIN_EFFICIENCY = 0.9  # real tokens per prompt slot that a batch keeps
CPU_TOKEN_BUDGET = 1024  # on a CPU, long prompts run one at a time (batching them gains nothing, padding costs)
GPU_TOKEN_BUDGET_CAP = 32_768


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """The number of tokens of each text (without special tokens)."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False).input_ids]


def length_batches(
    lengths: Sequence[int],
    *,
    max_rows: int,
    token_budget: int | None = None,
    extra: int = 0,
    min_efficiency: float = MIN_EFFICIENCY,
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first (see the module docstring for the rules)."""
    integer("max_rows", max_rows, at_least=1)
    if token_budget is not None:
        integer("token_budget", token_budget, at_least=1)
    if not 0 <= finite_number("min_efficiency", min_efficiency) <= 1:
        raise ValueError(f"min_efficiency must be between 0 and 1, got {min_efficiency}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if batch is not None:
            longest, rows = lengths[batch[0]], len(batch) + 1
            real = sum(lengths[i] for i in batch) + lengths[index]
            fits = rows <= max_rows and (token_budget is None or rows * (longest + extra) <= token_budget)
            if fits and real >= min_efficiency * rows * longest:
                batch.append(index)
                continue
        batches.append([index])
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Real tokens over token slots (each batch's rows times its longest prompt), over all batches: 1.0 when no
    slot is padding."""
    slots = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return sum(lengths[i] for batch in batches for i in batch) / slots if slots else 1.0


def default_token_budget(model: PreTrainedModel) -> int:
    """Token slots per batch that suit the model's device: on a CPU :data:`CPU_TOKEN_BUDGET` (short prompts are
    batched, long ones run alone); on a GPU as many as about half its free memory holds, counting each token's
    keys and values in every layer and its activations in one layer (capped at :data:`GPU_TOKEN_BUDGET_CAP`)."""
    if model.device.type != "cuda":
        return CPU_TOKEN_BUDGET
    config = model.config.get_text_config()
    free, _ = torch.cuda.mem_get_info(model.device)
    width = next(model.parameters()).element_size()
    per_token = width * (2 * config.num_hidden_layers * config.hidden_size + 16 * config.hidden_size)
    return max(CPU_TOKEN_BUDGET, min(GPU_TOKEN_BUDGET_CAP, free // (2 * per_token)))
