"""Checkers for notebook 6, "Activation steering beside cache steering"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.caa import ActivationVector, Mode, caa_generate
from ..core.generation import Completion
from .feedback import Feedback, checker, correct, wrong


def whole_number(answer: Any) -> int | None:
    """``answer`` as an int when it is a whole number (``3`` or ``3.0``, not ``True`` or ``"3"``), else None."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
        return None
    if answer != int(answer):
        return None
    return int(answer)


def changed_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                    plain: Sequence[Completion], vector: ActivationVector, *, layer: int, multiplier: float,
                    mode: Mode, max_new_tokens: int) -> int:
    """How many of the unsteered answers ``plain`` change (in any token) when CAA steers ``prompts`` greedily."""
    steered = caa_generate(model, tokenizer, prompts, vector, layer=layer, multiplier=multiplier, mode=mode,
                           max_new_tokens=max_new_tokens, progress=False)
    return sum(s.text != p.text for s, p in zip(steered, plain, strict=True))


@checker("answer_1 = how many of the unsteered answers CAA one_shot at multiplier 5 changes (a whole number)")
def check_one_shot_changes(answer: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                           prompts: Sequence[str], plain: Sequence[Completion], vector: ActivationVector, layer: int,
                           max_new_tokens: int) -> Feedback:
    """Exercise 1. Regenerates the one-shot answers (one short greedy batch); names the usual slips: a share for a
    count, the unchanged answers, the sweep's cached mode."""
    n = len(prompts)
    count = whole_number(answer)
    if count is None:
        if isinstance(answer, float) and 0 < answer < 1:
            return wrong(f"give the number of changed answers (out of {n}), not their share")
        return wrong(f"give a whole number between 0 and {n}: how many steered answers differ from `plain`")
    if not 0 <= count <= n:
        return wrong(f"there are only {n} questions: the count lies between 0 and {n}")
    def changed(mode: Mode) -> int:
        return changed_answers(model, tokenizer, prompts, plain, vector, layer=layer, multiplier=5.0, mode=mode,
                               max_new_tokens=max_new_tokens)

    expected = changed("one_shot")
    if count == expected:
        return correct(f"{expected} of {n} answers changed. One-shot CAA touches the residual stream once, at the "
                       "prompt's last token, and leaves decoding alone, as cache steering edits the cache once at "
                       "that same position; the change it makes there still carries into every later token")
    if count == n - expected:
        return wrong("you counted the answers that stayed the same: count those whose text differs from `plain`")
    if count == changed("cached"):
        return wrong('that is the count of the sweep\'s mode, "cached", which steers every new token too: use '
                     'mode="one_shot"')
    return wrong('not the count I get: generate with cs.caa_generate(..., layer=LAYER, multiplier=5.0, '
                 'mode="one_shot", max_new_tokens=MAX_NEW_TOKENS) and count the texts that differ from `plain`')


@checker("answer_2 = a dict {layer: number of answers changed by CAA (cached, multiplier 3) at that layer}, with "
         "an early layer, LAYER and a late one")
def check_layer_sweep(answer: Mapping[int, int], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      prompts: Sequence[str], plain: Sequence[Completion], vector: ActivationVector, layer: int,
                      max_new_tokens: int, relative_norms: Sequence[float] | None = None) -> Feedback:
    """Exercise 2. Regenerates the answers at three of the learner's layers (the first, ``layer`` and the last),
    so that a long dict costs no more; ``relative_norms`` (the norm figure's residual-stream curve) lets the
    verdict say whether the vector's size at each layer predicted the counts."""
    if not isinstance(answer, Mapping):
        return wrong("give a dict {layer: number of changed answers}, e.g. {7: 1, 13: 3, 22: 0}")
    n, n_layers = len(prompts), len(vector.directions)
    counts: dict[int, int] = {}
    for key, value in answer.items():
        index, count = whole_number(key), whole_number(value)
        if index is None or not 0 <= index < n_layers:
            return wrong(f"{key!r} is not a layer: the keys are layer numbers from 0 to {n_layers - 1}")
        if count is None:
            share = isinstance(value, float) and 0 < value < 1
            return wrong(f"layer {index}: give the number of changed answers (out of {n})"
                         + (", not their share" if share else ", a whole number"))
        if not 0 <= count <= n:
            return wrong(f"layer {index}: there are only {n} questions, so the count lies between 0 and {n}")
        counts[index] = count
    if layer not in counts or min(counts) >= layer or max(counts) <= layer:
        return wrong(f"include LAYER ({layer}), a layer before it and a layer after it, e.g. "
                     f"{{{n_layers // 4}: ..., {layer}: ..., {3 * n_layers // 4}: ...}}")
    checked = sorted({min(counts), layer, max(counts)})
    expected = {index: changed_answers(model, tokenizer, prompts, plain, vector, layer=index, multiplier=3.0,
                                       mode="cached", max_new_tokens=max_new_tokens) for index in checked}
    if all(counts[i] == n - expected[i] for i in checked) and any(counts[i] != expected[i] for i in checked):
        return wrong("you counted the answers that stayed the same: count those whose text differs from `plain`")
    off = [i for i in checked if counts[i] != expected[i]]
    if off:
        return wrong(f"not the count I get at layer {off[0]}: steer with cs.caa_generate(..., layer={off[0]}, "
                     'multiplier=3.0, mode="cached", max_new_tokens=MAX_NEW_TOKENS) and count the texts that differ '
                     "from `plain`")
    found = ", ".join(f"layer {i}: {expected[i]} of {n}" for i in checked)
    most = max(checked, key=lambda i: expected[i])
    if relative_norms is None:
        return correct(f"{found} answers changed at multiplier 3")
    norms = {i: float(relative_norms[i]) for i in checked}
    largest = max(checked, key=lambda i: norms[i])
    verdict = ("the layer where the vector is largest relative to the residual stream is also where it changes the "
               "most answers" if expected[largest] == expected[most] else
               f"the vector is largest relative to the residual stream at layer {largest}, yet layer {most} changes "
               "the most: its size alone does not predict the effect (what later layers do with the edit matters)")
    sizes = ", ".join(f"{norms[i]:.2f}" for i in checked)
    return correct(f"{found} answers changed at multiplier 3; relative vector sizes {sizes}: {verdict}")


def cache_less_positions(prompt_tokens: int, new_tokens: int) -> int:
    """Positions processed to generate ``new_tokens`` tokens without a KV cache: the pass that produces token t
    reads the prompt and the t - 1 tokens before it, so the sum is T L + T (T - 1) / 2."""
    return new_tokens * prompt_tokens + new_tokens * (new_tokens - 1) // 2


@checker("answer_3 = the number of token positions processed to generate T = 256 tokens from an L = 200-token "
         "prompt without a KV cache (a whole number)")
def check_cache_less_cost(answer: int, prompt_tokens: int = 200, new_tokens: int = 256,
                          measured_ratios: Mapping[str, Mapping[str, float]] | None = None) -> Feedback:
    """Exercise 3. The exact sum, and the usual slips: the cached count, one position too many per step, the
    T^2 / 2 approximation, a prompt that does not grow, and every step at the final length.
    ``measured_ratios`` (``live_timing["ratios"]``, by batch size) puts the measured slowdown beside the count."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return wrong("give one number: the positions processed over all the forward passes")
    L, T = prompt_tokens, new_tokens
    expected = cache_less_positions(L, T)
    cached = L + T - 1
    if answer == expected:
        ratio = expected / cached
        measured = "" if not measured_ratios else " The live run measured " + ", ".join(
            f"{ratios['caa_paper']:.1f}x at batch {batch}" for batch, ratios in measured_ratios.items()) + "."
        return correct(f"{expected:,} positions = T L + T (T - 1) / 2 = {T * L:,} + {T * (T - 1) // 2:,}; with a "
                       f"cache, {cached:,} (the prompt once, then one new token per step): {ratio:.0f}x fewer. The "
                       f"paper measured only 1.57x at batch 1 and 14x at batch 16 on an H100: time is not "
                       f"proportional to positions while the hardware has idle parallel capacity.{measured}")
    slips = {
        L + T: "that is about the count *with* a cache (the prompt once, then one token per step); without one, "
               "every step reads the whole sequence again",
        cached: "that is the count *with* a cache; without one, every step reads the whole sequence again",
        T * L + T * (T + 1) // 2: "one position too many per step: the pass that produces token t reads the prompt "
                                  "and the t - 1 tokens before it, not token t itself",
        T * L + T * T // 2: "that is the approximation T L + T^2 / 2; count exactly: the sum over t = 1..T of "
                            "L + t - 1",
        T * L: "the sequence grows: step t reads the prompt and the t - 1 tokens generated so far, not only the prompt",
        T * (L + T): "not every step reads the final length: step t reads L + t - 1 positions",
    }
    for value, hint in slips.items():
        if answer == value:
            return wrong(hint)
    return wrong("add up the positions of every forward pass: the pass that produces token t (t = 1..T) reads the "
                 "L prompt tokens and the t - 1 tokens generated before it")
