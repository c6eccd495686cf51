"""Batches built by length: prompts sorted longest first and grouped so that little of a batch is padding.

A left-padded batch costs as many token slots as its rows times its longest prompt (plus the tokens it will
generate). A batch here grows, in longest-first order, only while

* it has at most ``max_rows`` rows,
* its token slots (rows x (longest prompt + ``extra`` tokens to come)) stay within ``token_budget``, and
* its real tokens (each prompt + ``extra``) fill at least ``min_efficiency`` of those slots.

A prompt longer than the budget runs alone. Two settings of ``min_efficiency``, both measured
(``benchmarks/bench_core.py``):

* :data:`MIN_EFFICIENCY` (0.9) for one forward pass over prompts: vector extraction and forced choice (within
  the device's token budget, :func:`reading_batches`) and the look-ahead loss (short samples, no budget). A
  contrastive set's positive prompts are about twice as long as its negatives, and cutting them into fixed
  batches pads up to 30% of the slots; grouped, they are batched without that waste.
* :data:`DECODING_MIN_EFFICIENCY` (0) for generation: each further batch costs a whole decoding run (hundreds of
  sequential steps), which outweighs the padding of its prompts, so generation keeps the fewest batches, of
  sorted neighbours.

Which prompts share a batch never changes what each one computes (left padding is masked and positions count from
each row's first real token), so results equal one-at-a-time runs up to float32 batching noise: the library's
oracle tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .checks import finite_number, integer

MIN_EFFICIENCY = 0.9  # real tokens per token slot that a batch of one forward pass keeps
DECODING_MIN_EFFICIENCY = 0.0  # generation: the fewest batches (an extra batch costs more than its padding saves)
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
            real = sum(lengths[i] for i in batch) + lengths[index] + rows * extra
            slots = rows * (longest + extra)
            fits = rows <= max_rows and (token_budget is None or slots <= token_budget)
            if fits and real >= min_efficiency * slots:
                batch.append(index)
                continue
        batches.append([index])
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]], extra: int = 0) -> float:
    """Real tokens over token slots (each batch's rows times its longest prompt plus ``extra``), over all batches:
    1.0 when no slot is padding."""
    slots = sum(len(batch) * (max(lengths[i] for i in batch) + extra) for batch in batches if batch)
    real = sum(lengths[i] + extra for batch in batches for i in batch)
    return real / slots if slots else 1.0


def reading_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_rows: int,
    token_budget: int | None = None,
) -> list[list[int]]:
    """Batches of ``texts`` for one forward pass each (extraction, forced choice): at least
    :data:`MIN_EFFICIENCY` real tokens, at most ``max_rows`` rows and ``token_budget`` token slots (by default
    :func:`default_token_budget` of the model's device)."""
    budget = default_token_budget(model) if token_budget is None else token_budget
    return length_batches(token_lengths(tokenizer, texts), max_rows=max_rows, token_budget=budget)


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
