"""Benchmark of the core: load times, cache-steered vs plain decoding, batched vs one-by-one extraction.

Every figure is a ratio of two measurements taken in this one run, interleaved (A, B, A, B, ...) so that a
busy machine slows both alike; each timing is the median of ``--repeats`` runs after one warm-up.

    python benchmarks/bench_core.py [--repeats 3] [--out data/results/benchmarks/core_cpu.json]

Decoding: both methods get the same token ids (prompt + offset token) and generate exactly ``--new-tokens``
tokens per row (``min_new_tokens``), so tokens/s counts real generated tokens only, never padding. The
steered timing includes its prefill and edit, as the paper's did.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cachesteer_lite import (
    Demonstration,
    append_offset,
    chat_prompt,
    contrastive_pair,
    encode,
    extract_steering_vector,
    load_items,
    load_model,
    steered_generate,
)
from cachesteer_lite.runs.provenance import run_record
from cachesteer_lite.runs.records import write_json
from cachesteer_lite.runs.timing import interleaved
from cachesteer_lite.tasks.traces import read_traces

REPO = Path(__file__).resolve().parents[1]


def load_times() -> dict[str, float]:
    """First load (GGUF dequantised and converted) and later load (plain folder), in a fresh cache directory."""
    previous = os.environ.get("CACHESTEER_CACHE_DIR")
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["CACHESTEER_CACHE_DIR"] = fresh
        start = time.perf_counter()
        load_model(device="cpu")
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_model(device="cpu")
        later = time.perf_counter() - start
    if previous is None:
        os.environ.pop("CACHESTEER_CACHE_DIR")
    else:
        os.environ["CACHESTEER_CACHE_DIR"] = previous
    return {"first_load_s": first, "later_load_s": later}


def decoding(model, tokenizer, vector, batch_size: int, n_prompts: int, new_tokens: int, repeats: int) -> dict:
    """Tokens/s of plain and cache-steered generation on the same inputs, at one batch size."""
    prompts = [chat_prompt(tokenizer, item.question) for item in load_items("arc_challenge", "test", limit=n_prompts)]
    batches = []
    for start in range(0, n_prompts, batch_size):
        batch = encode(tokenizer, prompts[start : start + batch_size])
        batches.append(append_offset(tokenizer, batch.input_ids, batch.attention_mask))
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)

    def plain():
        for ids, mask in batches:
            model.generate(input_ids=ids, attention_mask=mask, **kwargs)

    def steered():
        for ids, mask in batches:
            steered_generate(model, ids, mask, vector, c_values=6.0, **kwargs)

    seconds = interleaved({"plain": plain, "steered": steered}, repeats)
    tokens = n_prompts * new_tokens
    result = {name: {"seconds": s, "tokens_per_s": tokens / s, "ms_per_token": 1000 * s / tokens}
              for name, s in seconds.items()}
    ratio = result["steered"]["tokens_per_s"] / result["plain"]["tokens_per_s"]
    result["ratio_steered_over_plain_tokens_per_s"] = ratio
    result.update(batch_size=batch_size, n_prompts=n_prompts, new_tokens_per_prompt=new_tokens)
    return result


def short_pairs(n: int) -> list[tuple[str, str]]:
    """Short (positive, negative) prompts of ~20 tokens, where per-call overhead dominates the cost."""
    return [(f"Q{i}: think it through. Step by step, {i} plus {i} is", f"Q{i}: answer now. {i} plus {i} is")
            for i in range(n)]


def extraction(model, tokenizer, pairs: list[tuple[str, str]], repeats: int, label: str) -> dict:
    """Pairs/s of extraction at batch 16 and one pair at a time, on the same pairs."""
    seconds = interleaved({
        "batched_16": lambda: extract_steering_vector(model, tokenizer, pairs, batch_size=16, progress=False),
        "one_by_one": lambda: extract_steering_vector(model, tokenizer, pairs, batch_size=1, progress=False),
    }, repeats)
    lengths = [len(tokenizer(text).input_ids) for pair in pairs for text in pair]
    return {
        "prompts": label,
        "n_pairs": len(pairs),
        "mean_prompt_tokens": sum(lengths) / len(lengths),
        "batched_16_pairs_per_s": len(pairs) / seconds["batched_16"],
        "one_by_one_pairs_per_s": len(pairs) / seconds["one_by_one"],
        "ratio_batched_over_one_by_one": seconds["one_by_one"] / seconds["batched_16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "data" / "results" / "benchmarks" / "core_cpu.json")
    args = parser.parse_args()
    started = time.perf_counter()

    print("measuring load times (first load converts the GGUF) ...", flush=True)
    loads = load_times()
    model, tokenizer = load_model(device="cpu")
    traces = read_traces(REPO / "data" / "traces" / "arc_challenge.jsonl")
    demos = [Demonstration(t.question, t.reasoning, t.answer) for t in traces]
    arc_pairs = [contrastive_pair(tokenizer, [demos[i + 1]], demos[i].question) for i in range(32)]
    vector = extract_steering_vector(model, tokenizer, arc_pairs[:8], progress=False)

    print("measuring decoding, batch 1 and 16 ...", flush=True)
    decode = [decoding(model, tokenizer, vector, 1, 4, args.new_tokens, args.repeats),
              decoding(model, tokenizer, vector, 16, 16, args.new_tokens, args.repeats)]
    print("measuring extraction, short and paper-format prompts ...", flush=True)
    extract = [extraction(model, tokenizer, short_pairs(32), args.repeats, "short synthetic (~20 tokens)"),
               extraction(model, tokenizer, arc_pairs, args.repeats, "ARC, 1 demonstration (paper format)")]

    report = {"load": loads, "decoding": decode, "extraction": extract, "config": vars(args) | {"out": str(args.out)},
              "run": run_record(), "wall_time_s": time.perf_counter() - started}
    write_json(args.out, report)

    print(f"load: first {loads['first_load_s']:.1f} s (GGUF -> HF folder), later {loads['later_load_s']:.2f} s")
    for d in decode:
        print(f"decode batch {d['batch_size']:>2}: plain {d['plain']['tokens_per_s']:.1f} tok/s, "
              f"steered {d['steered']['tokens_per_s']:.1f} tok/s, ratio steered/plain "
              f"{d['ratio_steered_over_plain_tokens_per_s']:.3f}")
    for e in extract:
        print(f"extraction, {e['prompts']}, {e['mean_prompt_tokens']:.0f} tokens/prompt: batched(16) "
              f"{e['batched_16_pairs_per_s']:.2f} pairs/s, one-by-one {e['one_by_one_pairs_per_s']:.2f} pairs/s, "
              f"ratio {e['ratio_batched_over_one_by_one']:.2f}x")
    print(f"written to {args.out} ({report['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
