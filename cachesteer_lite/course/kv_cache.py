"""Checkers for notebook 1, "Inside the KV cache"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

from ..core.steering import steered_cache
from ..core.vectors import SteeringVector
from .feedback import Feedback, checker, close, correct, wrong


def cache_kib(fingerprint: dict[str, Any], n_tokens: int, bytes_per_number: int) -> float:
    """Keys and values of every layer and KV head for ``n_tokens`` tokens, in KiB."""
    per_token = 2 * fingerprint["n_layers"] * fingerprint["n_kv_heads"] * fingerprint["head_dim"] * bytes_per_number
    return n_tokens * per_token / 1024


@checker("answer_1 = the KiB that the cache of a 2,000-token prompt takes in bfloat16 (a number)")
def check_cache_kib(answer: float, fingerprint: dict[str, Any], n_query_heads: int) -> Feedback:
    """Exercise 1. The usual slips each get their own hint: float32, keys only, kB for KiB, query heads."""
    expected = cache_kib(fingerprint, 2000, bytes_per_number=2)
    slips = {
        2.0: "that is the size in float32 (4 bytes a number); bfloat16 has 2",
        0.5: "the cache holds keys *and* values: count both",
        1.024: "a KiB is 1,024 bytes, not 1,000",
        n_query_heads / fingerprint["n_kv_heads"]: "the cache stores the KV heads only, not one row per query head",
    }
    if close(answer, expected, 1e-3):
        return correct(f"{expected:,.0f} KiB = 2,000 tokens x 2 (keys and values) x {fingerprint['n_layers']} layers "
                       f"x {fingerprint['n_kv_heads']} KV heads x {fingerprint['head_dim']} numbers x 2 bytes / 1,024")
    for factor, hint in slips.items():
        if factor != 1 and close(answer, expected * factor, 1e-3):
            return wrong(hint)
    return wrong("multiply 2,000 tokens x 2 (keys and values) x layers x KV heads x head_dim x 2 bytes, then divide "
                 "by 1,024; the fingerprint printed at the top has every factor")


def next_token_kl(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  vector: SteeringVector, coefficients: Sequence[float], part: str) -> list[float]:
    """KL(unedited || edited) of the next-token distribution when ``part`` ("keys" or "values") of the last cached
    position is moved by ``c * vector`` in every layer but the first: the experiment at the end of notebook 1."""

    def log_probs(c: float) -> torch.Tensor:
        c_keys, c_values = (c, 0.0) if part == "keys" else (0.0, c)
        cache = steered_cache(model, input_ids, attention_mask, vector, c_keys=c_keys, c_values=c_values)
        with torch.no_grad():
            out = model(input_ids=input_ids[:, -1:], attention_mask=attention_mask, past_key_values=cache)
        return out.logits[0, -1].float().log_softmax(-1)

    reference = log_probs(0.0)
    return [float((reference.exp() * (reference - log_probs(c))).sum()) for c in coefficients]


@checker("answer_2 = the list of KL values of the key edit, one per coefficient in `coefficients`")
def check_key_edit(answer: Sequence[float], model: PreTrainedModel, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, random_vector: SteeringVector, coefficients: Sequence[float],
                   value_kl: Sequence[float]) -> Feedback:
    """Exercise 2: the KL curve when the random direction moves the last position's keys instead of its values."""
    key_vector = SteeringVector(random_vector.values, torch.zeros_like(random_vector.values), random_vector.metadata)
    expected = next_token_kl(model, input_ids, attention_mask, key_vector, coefficients, "keys")
    answer = [float(x) for x in answer]
    if len(answer) != len(expected):
        return wrong(f"give one KL value per coefficient: {len(expected)} values, not {len(answer)}")
    if max(abs(x) for x in answer) < 1e-9:
        return wrong("your curve is flat at zero: `random_vector` has zero keys, so `c_keys` scales nothing. Build a "
                     "vector whose keys are the random direction: cs.SteeringVector(direction, "
                     "torch.zeros_like(direction), meta)")
    if all(close(a, v, 1e-3) for a, v in zip(answer, value_kl, strict=True)):
        return wrong("this is the value curve again: move the keys (c_keys) with a vector whose keys are the direction")
    if not all(close(a, e, 1e-3) or abs(a - e) < 1e-5 for a, e in zip(answer, expected, strict=True)):
        return wrong("not the expected curve: edit the keys of the last position in every layer but the first, with "
                     "the same unit-norm direction and the same coefficients as the value edit")
    ratio = value_kl[-1] / max(expected[-1], 1e-12)
    side = "less" if ratio > 1 else "more"
    return correct(f"at c = {coefficients[-1]:g} the key edit moves the distribution by {expected[-1]:.3g} nats, the "
                   f"value edit by {value_kl[-1]:.3g}: per unit of edit, keys are {side} sensitive here "
                   f"({max(ratio, 1 / ratio):.1f}x)")
