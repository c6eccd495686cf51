"""One-shot KV cache steering, as the paper applies it (paper-reference section 2.5).

1. Append an offset token ("\\n"; " " for GSM8K) to the prompt (:func:`append_offset`).
2. Prefill the cache with everything but that token: the cache's last entry is then the last prompt token,
   the very token the vector was read from.
3. Add ``c_keys * k`` and ``c_values * v`` once, at that last position, in the chosen layers (default: all but
   layer 0, where the value difference is zero when both prompts end in the same token).
4. Call the standard ``model.generate``: it feeds the offset token first, and nothing else is changed, so
   decoding costs exactly what plain decoding costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .cache import add_at_position, prefill
from .checks import finite_number, layer_indices
from .deviations import Deviation
from .generation import Completion, batched_completions, generation_settings
from .vectors import SteeringVector

DEFAULT_OFFSET = "\n"

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "Layer 0",
        "excluded in the evaluation scripts, steered in the README example, the notebook and the timing benchmark",
        "excluded everywhere (keys and values): `default_layers`, see "
        "{doc}`../notebooks/03_steering_vector_extraction`",
        "at layer 0 the value difference is exactly zero and the key difference is a position artefact",
    ),
    Deviation(
        "Offset token for GSM8K",
        "the main GSM8K configurations append no offset token, so the vector is added to the token *before* the "
        "one it was read at",
        'the offset token (`" "`) is appended for GSM8K as well',
        "the vector is always added at the token it was extracted from",
    ),
)


def default_layers(n_layers: int) -> list[int]:
    """Every layer but layer 0 (the paper's ``layers_ids=[1]``)."""
    return list(range(1, n_layers))


def offset_token_id(tokenizer: PreTrainedTokenizerBase, offset: str) -> int:
    """The id of the offset token, which must be a single token for this tokenizer."""
    ids = tokenizer(offset, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"offset {offset!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
    return ids[0]


def append_offset(
    tokenizer: PreTrainedTokenizerBase, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    offset: str = DEFAULT_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch with the offset token appended to every row, and its mask: step 1 of the method."""
    column = torch.full_like(input_ids[:, :1], offset_token_id(tokenizer, offset))
    return torch.cat([input_ids, column], dim=1), torch.cat([attention_mask, torch.ones_like(column)], dim=1)


def steered_cache(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    vector: SteeringVector,
    *,
    c_keys: float = 0.0,
    c_values: float = 0.0,
    layers: Iterable[int] | None = None,
) -> DynamicCache:
    """The cache of every token but the last (the offset token), with the vector added at its last position.

    The inputs may be on any device (the prefill moves them to the model's); the vector is cast to each cache
    layer's own device and dtype."""
    c_keys, c_values = finite_number("c_keys", c_keys), finite_number("c_values", c_values)
    vector.check_compatible(model)
    n_layers = vector.keys.shape[0]
    chosen = default_layers(n_layers) if layers is None else layer_indices("layers", layers, n_layers)
    cache = prefill(model, input_ids[:, :-1], attention_mask[:, :-1])
    add_at_position(cache, chosen, c_keys * vector.keys, c_values * vector.values)
    return cache


@torch.no_grad()
def steered_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    vector: SteeringVector,
    *,
    c_keys: float = 0.0,
    c_values: float = 0.0,
    layers: Iterable[int] | None = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """``model.generate`` with a one-shot cache edit; the same inputs and outputs as ``generate``.

    ``input_ids`` is a left-padded batch whose last column is the offset token (:func:`append_offset`). Returns
    the full sequences, as ``generate`` does. ``generate_kwargs`` go to ``generate`` unchanged (greedy or
    sampling). The steered cache is built afresh for every call: ``generate`` extends it in place, so it is
    never reused. The inputs are moved to the model's device first.
    """
    for own in ("past_key_values", "cache_implementation"):
        if own in generate_kwargs:
            raise ValueError(f"cache steering builds its own cache; do not pass {own!r}")
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    cache = steered_cache(
        model, input_ids, attention_mask, vector, c_keys=c_keys, c_values=c_values, layers=layers
    )
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **generate_kwargs)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    vector: SteeringVector | None = None,
    *,
    c_keys: float | None = None,
    c_values: float | None = None,
    layers: Iterable[int] | None = None,
    offset: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = True,
    **generate_kwargs: Any,
) -> list[Completion]:
    """Answer every prompt, with one-shot cache steering when a ``vector`` is given.

    With a vector, ``offset`` (default ``"\\n"``) is appended and the cache is steered by ``c_keys`` and
    ``c_values`` (0 when not given). Without one this is plain ``generate``: on the prompts alone (the unsteered
    baseline), or, when an ``offset`` is given, on the prompts with it appended (the paper's control: the offset
    token without the edit); coefficients or layers are refused (they would steer nothing). Completions hold only
    the newly generated tokens (the offset token is part of the input). Prompts of similar lengths share a
    batch, to waste little padding, and come back in the input order.
    """
    given = [name for name, value in (("c_keys", c_keys), ("c_values", c_values), ("layers", layers))
             if value is not None]
    if vector is None and given:
        raise ValueError(f"{', '.join(given)} given without a steering vector: pass the vector to steer with")
    key_scale = finite_number("c_keys", c_keys) if c_keys is not None else 0.0
    value_scale = finite_number("c_values", c_values) if c_values is not None else 0.0
    if vector is not None and layers is not None:
        layers = layer_indices("layers", layers, vector.keys.shape[0])
    settings = generation_settings(tokenizer, max_new_tokens, generate_kwargs)
    if vector is not None and offset is None:
        offset = DEFAULT_OFFSET

    def new_tokens(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if offset is not None:
            ids, mask = append_offset(tokenizer, ids, mask, offset)
        if vector is None:
            return model.generate(input_ids=ids, attention_mask=mask, **settings)[:, ids.shape[1] :]
        sequences = steered_generate(model, ids, mask, vector, c_keys=key_scale, c_values=value_scale,
                                     layers=layers, **settings)
        return sequences[:, ids.shape[1] :]

    if offset is not None:
        offset_token_id(tokenizer, offset)  # a bad offset fails before any batch runs
    extra = max_new_tokens + (0 if offset is None else 1)
    return batched_completions(model, tokenizer, prompts, new_tokens, extra_tokens=extra, batch_size=batch_size,
                               progress=progress)
