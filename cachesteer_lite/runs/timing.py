"""Timing generation methods fairly: the same inputs, interleaved repeats, real tokens only, ratios from one run.

The harness of the latency benchmark (``benchmarks/bench_latency.py``) and of notebook 6's live timing. It times
five methods on the same prompts: the paper's benchmark (paper-reference section 4.2) without its measurement
defects.

* ``baseline`` (plain ``generate``); ``cache_steering`` (prompt + offset token "\\n", c_values 6; the timing
  includes its prefill and cache edit, as the paper's did); ``caa_paper`` (activation steering at every pass,
  ``use_cache=False``: the paper's "continuous" setting, multiplier 1.0); ``caa_cached`` (every new token steered,
  KV cache kept, multiplier 1.0); ``caa_one_shot`` (only the prompt's last token in the prefill, multiplier 5.0).
  The CAA layer sits at the relative depth of the paper's layer 7 of Llama-3.2-1B's 16.
* Every method generates exactly ``new_tokens`` tokens per row (``min_new_tokens = max_new_tokens``), so the
  tokens counted are rows x new tokens: real generated tokens only. The paper counted the padding of finished
  rows and of the partial last batch, and for cache steering the appended offset token as well.
* Each method is warmed up once; then ``repeats`` interleaved repeats (A, B, C, D, E, A, B, ...) so that a busy
  machine slows all alike, and the median is reported (:func:`interleaved`). Every ``generate`` call is timed
  with ``time.perf_counter``, with ``torch.cuda.synchronize()`` before and after it on CUDA (the paper used
  ``time.time()``, no warm-up, no synchronisation). Batch 1 runs the same prompts one at a time and sums the
  times over the prompts of a repeat.
* Ratio = ms/token of a method / ms/token of the baseline, both from this run.
* Check that steering acted: after the timing, the rows whose generated tokens differ from the unsteered
  generation of the same input (the baseline; for cache steering a plain ``generate`` of prompt + offset token,
  untimed) are counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.caa import ActivationVector, Mode, activation_fingerprint, activation_steering
from ..core.progress import progress_bar
from ..core.prompts import chat_prompt, encode
from ..core.steering import append_offset, steered_generate
from ..core.vectors import SteeringVector
from ..tasks.data import load_items


def interleaved(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, measured in alternation (A, B, A, B, ...) after one warm-up of each."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


METHODS: tuple[str, ...] = ("baseline", "cache_steering", "caa_paper", "caa_cached", "caa_one_shot")
LABELS: dict[str, str] = {
    "baseline": "Baseline",
    "cache_steering": "Cache steering",
    "caa_paper": "CAA paper (no cache)",
    "caa_cached": "CAA cached",
    "caa_one_shot": "CAA one-shot",
}
OFFSET = "\n"
C_VALUES = 6.0  # the paper's latency run: cv=6, ck=0
MULTIPLIERS: dict[str, float] = {"caa_paper": 1.0, "caa_cached": 1.0, "caa_one_shot": 5.0}

# The paper's latency table (paper-reference section 7): Llama-3.2-1B-Instruct, fp32, one H100, mean of 3 runs,
# ms/token as the paper counted tokens (padding and, for cache steering, the appended token included).
# Its "Activation, continuous" is caa_paper here; it did not measure caa_cached.
PAPER: dict[str, Any] = {
    "model": "meta-llama/Llama-3.2-1B-Instruct",
    "device": "H100",
    "ms_per_token": {
        1: {"baseline": 10.067, "cache_steering": 10.062, "caa_paper": 15.789, "caa_one_shot": 10.219},
        16: {"baseline": 0.803, "cache_steering": 0.801, "caa_paper": 11.214, "caa_one_shot": 0.814},
    },
}


def paper_ratios() -> dict[int, dict[str, float]]:
    """The paper's ratios to its baseline (cache steering 1.00/1.00, continuous CAA 1.57/14.0, one-shot 1.02/1.01)."""
    return {bs: {m: v / row["baseline"] for m, v in row.items()} for bs, row in PAPER["ms_per_token"].items()}


def caa_layer_for(n_layers: int) -> int:
    """The layer at the relative depth of the paper's layer 7 of 16 (Llama-3.2-1B): 7 there, 13 of SmolLM2's 30."""
    return min(n_layers - 1, round(7 * n_layers / 16))


Method = Callable[["Batch"], torch.Tensor]


@dataclass(frozen=True)
class Batch:
    """One left-padded batch: the prompts alone, and the prompts with the offset token (for cache steering)."""

    ids: torch.Tensor
    mask: torch.Tensor
    offset_ids: torch.Tensor
    offset_mask: torch.Tensor


def make_batches(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int,
                 device: torch.device) -> list[Batch]:
    """Consecutive batches of ``batch_size`` prompts (dataset order, as the paper), on ``device``."""
    batches = []
    for start in range(0, len(prompts), batch_size):
        enc = encode(tokenizer, prompts[start : start + batch_size], device)
        batches.append(Batch(enc.input_ids, enc.attention_mask,
                             *append_offset(tokenizer, enc.input_ids, enc.attention_mask, OFFSET)))
    return batches


def method_functions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, steering: SteeringVector,
                     activation: ActivationVector, layer: int, new_tokens: int) -> dict[str, Method]:
    """Each method as a function of a batch that returns only the generated tokens, ``[rows, new_tokens]``."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)

    def baseline(b: Batch) -> torch.Tensor:
        return model.generate(input_ids=b.ids, attention_mask=b.mask, **kwargs)[:, b.ids.shape[1] :]

    def cache_steering(b: Batch) -> torch.Tensor:
        out = steered_generate(model, b.offset_ids, b.offset_mask, steering, c_values=C_VALUES, **kwargs)
        return out[:, b.offset_ids.shape[1] :]

    def caa(mode: Mode, multiplier: float) -> Method:
        def run(b: Batch) -> torch.Tensor:
            with activation_steering(model, activation, layer, multiplier, mode):
                out = model.generate(input_ids=b.ids, attention_mask=b.mask, use_cache=mode != "paper", **kwargs)
            return out[:, b.ids.shape[1] :]

        return run

    return {
        "baseline": baseline,
        "cache_steering": cache_steering,
        "caa_paper": caa("paper", MULTIPLIERS["caa_paper"]),
        "caa_cached": caa("cached", MULTIPLIERS["caa_cached"]),
        "caa_one_shot": caa("one_shot", MULTIPLIERS["caa_one_shot"]),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pass(fn: Method, batches: Sequence[Batch], device: torch.device,
               new_tokens: int) -> tuple[float, list[torch.Tensor]]:
    """Seconds of one pass over all batches (each call timed alone, synchronised) and the generated tokens."""
    seconds, outputs = 0.0, []
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        out = fn(batch)
        _sync(device)
        seconds += time.perf_counter() - start
        if out.shape[1] != new_tokens:
            raise RuntimeError(f"generated {out.shape[1]} tokens per row instead of {new_tokens}")
        outputs.append(out.cpu())
    return seconds, outputs


def rows_changed(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> int:
    """How many rows differ from the reference's in at least one generated token."""
    return sum(int((a != b).any(1).sum()) for a, b in zip(outputs, reference, strict=True))


def measure_batch_size(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                       functions: dict[str, Method], batch_size: int, new_tokens: int, repeats: int,
                       device: torch.device, progress: bool = True) -> dict[str, Any]:
    """Every method at one batch size: one warm-up each, ``repeats`` interleaved passes, medians and ratios."""
    batches = make_batches(tokenizer, prompts, batch_size, device)
    for fn in functions.values():  # warm-up: one call per method
        timed_pass(fn, batches[:1], device, new_tokens)
    times: dict[str, list[float]] = {name: [] for name in functions}
    outputs: dict[str, list[torch.Tensor]] = {}
    bar = progress_bar(total=repeats * len(functions), desc=f"batch {batch_size}", unit="pass", enabled=progress)
    for _ in range(repeats):
        for name, fn in functions.items():
            bar.set_postfix_str(name)
            seconds, outputs[name] = timed_pass(fn, batches, device, new_tokens)
            times[name].append(seconds)
            bar.update()
    bar.close()

    # untimed reference for cache steering: the same input (prompt + offset token), no edit
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    offset_reference = [model.generate(input_ids=b.offset_ids, attention_mask=b.offset_mask, **kwargs)
                        [:, b.offset_ids.shape[1] :].cpu() for b in batches]

    rows = sum(b.ids.shape[0] for b in batches)
    methods: dict[str, dict[str, Any]] = {}
    for name in functions:
        seconds = statistics.median(times[name])
        tokens = sum(out.numel() for out in outputs[name])  # rows x new tokens: no padding, no offset token
        reference = offset_reference if name == "cache_steering" else outputs["baseline"]
        methods[name] = {
            "seconds": seconds,
            "seconds_per_repeat": times[name],
            "tokens": tokens,
            "ms_per_token": 1000 * seconds / tokens,
            "tokens_per_s": tokens / seconds,
            "rows_changed_by_steering": None if name == "baseline" else rows_changed(outputs[name], reference),
            "first_row_text": tokenizer.decode(outputs[name][0][0], skip_special_tokens=True),
        }
    for entry in methods.values():
        entry["ratio_to_baseline"] = entry["ms_per_token"] / methods["baseline"]["ms_per_token"]
    return {
        "batch_size": batch_size,
        "n_prompts": rows,
        "n_batches": len(batches),
        "new_tokens_per_row": new_tokens,
        "prompt_padding_tokens": sum(int((b.mask == 0).sum()) for b in batches),
        "methods": methods,
    }


def measure(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, steering: SteeringVector,
            activation: ActivationVector, *, n_prompts: int = 16, new_tokens: int = 64, repeats: int = 3,
            batch_sizes: Sequence[int] = (1, 16), layer: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Latency of the five methods at each batch size, on the first ``n_prompts`` ARC-Challenge test prompts."""
    if repeats < 1 or new_tokens < 1 or n_prompts < 1:
        raise ValueError("repeats, new_tokens and n_prompts must be at least 1")
    n_layers = int(activation_fingerprint(model)["n_layers"])
    layer = caa_layer_for(n_layers) if layer is None else layer
    items = load_items("arc_challenge", "test", limit=n_prompts)
    if len(items) < n_prompts:
        raise ValueError(f"ARC-Challenge test has only {len(items)} items, {n_prompts} requested")
    prompts = [chat_prompt(tokenizer, item.question) for item in items]
    functions = method_functions(model, tokenizer, steering, activation, layer, new_tokens)
    prompt_tokens = encode(tokenizer, prompts).attention_mask.sum(-1).tolist()
    with torch.inference_mode():
        results = [measure_batch_size(model, tokenizer, prompts, functions, bs, new_tokens, repeats, model.device,
                                      progress) for bs in batch_sizes]
    return {
        "settings": {
            "n_layers": n_layers,
            "caa_layer": layer,
            "caa_layer_rule": "round(7 / 16 * n_layers): the paper's layer 7 of Llama-3.2-1B's 16, same relative depth",
            "cache_steering": {"c_keys": 0.0, "c_values": C_VALUES, "layers": "all but 0 (library default)",
                               "offset": OFFSET},
            "caa_multipliers": MULTIPLIERS,
            "prompt_tokens_mean": statistics.mean(prompt_tokens),
            "prompt_tokens_max": max(prompt_tokens),
        },
        "results": results,
        "ratios": {str(r["batch_size"]): {m: r["methods"][m]["ratio_to_baseline"] for m in METHODS}
                   for r in results},
    }
