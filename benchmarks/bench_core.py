"""Benchmark of the core: load times, cache-steered vs plain decoding, extraction with the default batches vs one
prompt at a time, and evaluation throughput with and without length grouping.

Every figure is a ratio of two measurements taken in this one run, interleaved (A, B, A, B, ...) so that a
busy machine slows both alike; each timing is the median of ``--repeats`` runs after one warm-up.

    python benchmarks/bench_core.py [--repeats 3] [--device cpu] [--out data/results/benchmarks/core_<device>.json]

Decoding: both methods get the same token ids (prompt + offset token) and generate exactly ``--new-tokens``
tokens per row (``min_new_tokens``), so tokens/s counts real generated tokens only, never padding. The
steered timing includes its prefill and edit, as the paper's did.

Extraction: the default settings (length batches of at most 16 rows within the device's token budget,
``cachesteer_lite.core.batching``) against ``batch_size=1``, on short prompts and on paper-size ones (ARC pairs of
three demonstrations, positives about twice as long as negatives), with the padding efficiency (real tokens over
token slots) of the default batches and of the former fixed batches of 16.

Evaluation: what the runner generates for a multiple-choice question, the answer (``--new-tokens`` greedy tokens
at most) and the scoring continuation of its transcript (10 tokens), for ``--questions`` ARC questions batched
three ways (sorted by length into the fewest batches of 16, the default; dataset order; split further until each
batch's prompts fill 90% of its slots): questions per minute, batches and padding efficiency of each.
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
    generate,
    load_items,
    load_model,
    steered_generate,
)
from cachesteer_lite.core.batching import (
    DECODING_MIN_EFFICIENCY,
    MIN_EFFICIENCY,
    default_token_budget,
    length_batches,
    padding_efficiency,
    reading_batches,
    token_lengths,
)
from cachesteer_lite.core.models import default_device
from cachesteer_lite.core.vectors import pair_texts
from cachesteer_lite.runs.provenance import run_record
from cachesteer_lite.runs.records import write_json
from cachesteer_lite.runs.timing import interleaved
from cachesteer_lite.tasks.contrastive import random_neighbours
from cachesteer_lite.tasks.scoring import ANSWER_SUFFIX, ANSWER_TOKENS
from cachesteer_lite.tasks.traces import read_traces

REPO = Path(__file__).resolve().parents[1]


def portable(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, so that a stored report names no machine."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


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
    """Pairs/s of extraction with the default settings and one prompt at a time, on the same pairs, and the
    padding efficiency of the default batches and of the former fixed batches of 16."""
    seconds = interleaved({
        "default": lambda: extract_steering_vector(model, tokenizer, pairs, progress=False),
        "one_at_a_time": lambda: extract_steering_vector(model, tokenizer, pairs, batch_size=1, progress=False),
    }, repeats)
    lengths = token_lengths(tokenizer, pair_texts(pairs))
    default = reading_batches(model, tokenizer, pair_texts(pairs), max_rows=16)  # what extraction does
    fixed = length_batches(lengths, max_rows=16, min_efficiency=0.0)
    return {
        "prompts": label,
        "n_pairs": len(pairs),
        "mean_prompt_tokens": sum(lengths) / len(lengths),
        "prompt_tokens_range": [min(lengths), max(lengths)],
        "token_budget": default_token_budget(model),
        "default_batches": len(default),
        "default_pairs_per_s": len(pairs) / seconds["default"],
        "one_at_a_time_pairs_per_s": len(pairs) / seconds["one_at_a_time"],
        "ratio_default_over_one_at_a_time": seconds["one_at_a_time"] / seconds["default"],
        "padding_efficiency_default": padding_efficiency(lengths, default),
        "padding_efficiency_fixed_16": padding_efficiency(lengths, fixed),
    }


def paper_size_pairs(tokenizer, demos: list[Demonstration], n_pairs: int) -> list[tuple[str, str]]:
    """ARC contrastive pairs of three demonstrations each, drawn as the notebooks draw them (seeded)."""
    neighbours = random_neighbours(len(demos), 3, seed=0)
    return [contrastive_pair(tokenizer, [demos[j] for j in neighbours[i]], demos[i].question) for i in range(n_pairs)]


def dataset_order_batches(n: int, rows: int) -> list[list[int]]:
    """Consecutive chunks of ``rows`` prompts in dataset order: batching without any length grouping."""
    return [list(range(start, min(start + rows, n))) for start in range(0, n, rows)]


def evaluation(model, tokenizer, n_questions: int, new_tokens: int, repeats: int) -> dict:
    """Questions per minute of the runner's two generation steps for a multiple-choice question (the answer,
    ``new_tokens`` greedy tokens at most, and the scoring continuation of its transcript), on the same questions
    batched three ways, 16 rows at most: sorted by length into the fewest batches (the library's default), in
    dataset order, and split further until each batch's prompts fill 90% of its slots."""
    prompts = [chat_prompt(tokenizer, item.question) for item in load_items("arc_challenge", "test", limit=n_questions)]
    answers = generate(model, tokenizer, prompts, max_new_tokens=new_tokens, progress=False)  # untimed: transcripts
    transcripts = [prompt + answer.text + ANSWER_SUFFIX for prompt, answer in zip(prompts, answers, strict=True)]
    steps = {"answers": (prompts, new_tokens), "scoring": (transcripts, ANSWER_TOKENS)}
    lengths = {step: token_lengths(tokenizer, texts) for step, (texts, _) in steps.items()}
    plans = {
        "sorted": {step: length_batches(lengths[step], max_rows=16, extra=tokens,
                                        min_efficiency=DECODING_MIN_EFFICIENCY)
                   for step, (_, tokens) in steps.items()},
        "dataset_order": {step: dataset_order_batches(len(texts), 16) for step, (texts, _) in steps.items()},
        "split_90": {step: length_batches(lengths[step], max_rows=16, min_efficiency=MIN_EFFICIENCY)
                     for step in steps},
    }

    def run(plan: dict[str, list[list[int]]]) -> None:
        for step, (texts, tokens) in steps.items():
            for indices in plan[step]:
                batch = encode(tokenizer, [texts[i] for i in indices], model.device)
                model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=tokens,
                               do_sample=False, pad_token_id=tokenizer.pad_token_id)

    seconds = interleaved({name: lambda plan=plan: run(plan) for name, plan in plans.items()}, repeats)
    result: dict = {"n_questions": n_questions, "max_new_tokens": new_tokens, "max_rows": 16}
    for name, plan in plans.items():
        result[name] = {
            "seconds": seconds[name],
            "questions_per_minute": 60 * n_questions / seconds[name],
            "batches": {step: len(plan[step]) for step in steps},
            "prompt_padding_efficiency": {step: padding_efficiency(lengths[step], plan[step]) for step in steps},
            "padding_efficiency": {step: padding_efficiency(lengths[step], plan[step], extra=tokens)
                                   for step, (_, tokens) in steps.items()},
        }
    result["ratio_sorted_over_dataset_order"] = seconds["dataset_order"] / seconds["sorted"]
    result["ratio_sorted_over_split_90"] = seconds["split_90"] / seconds["sorted"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=48, help="ARC questions of the evaluation throughput")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--out", type=Path, help="default: data/results/benchmarks/core_<device>.json")
    args = parser.parse_args()
    args.out = args.out or REPO / "data" / "results" / "benchmarks" / f"core_{args.device}.json"
    started = time.perf_counter()

    print("measuring load times (first load converts the GGUF) ...", flush=True)
    loads = load_times()
    model, tokenizer = load_model(device=args.device)
    traces = read_traces(REPO / "data" / "traces" / "arc_challenge.jsonl")
    demos = [Demonstration(t.question, t.reasoning, t.answer) for t in traces]
    arc_pairs = [contrastive_pair(tokenizer, [demos[i + 1]], demos[i].question) for i in range(32)]
    vector = extract_steering_vector(model, tokenizer, arc_pairs[:8], progress=False)

    print("measuring decoding, batch 1 and 16 ...", flush=True)
    decode = [decoding(model, tokenizer, vector, 1, 4, args.new_tokens, args.repeats),
              decoding(model, tokenizer, vector, 16, 16, args.new_tokens, args.repeats)]
    print("measuring extraction, short and paper-format prompts ...", flush=True)
    extract = [extraction(model, tokenizer, short_pairs(32), args.repeats, "short synthetic (~20 tokens)"),
               extraction(model, tokenizer, arc_pairs, args.repeats, "ARC, 1 demonstration (paper format)"),
               extraction(model, tokenizer, paper_size_pairs(tokenizer, demos, 8), args.repeats,
                          "ARC, 3 demonstrations (paper size)")]
    print(f"measuring evaluation throughput, {args.questions} questions, batched three ways ...", flush=True)
    throughput = evaluation(model, tokenizer, args.questions, args.new_tokens, args.repeats)

    report = {"load": loads, "decoding": decode, "extraction": extract, "evaluation": throughput,
              "config": vars(args) | {"out": portable(args.out)}, "run": run_record(model.device),
              "wall_time_s": time.perf_counter() - started}
    write_json(args.out, report)

    print(f"load: first {loads['first_load_s']:.1f} s (GGUF -> HF folder), later {loads['later_load_s']:.2f} s")
    for d in decode:
        print(f"decode batch {d['batch_size']:>2}: plain {d['plain']['tokens_per_s']:.1f} tok/s, "
              f"steered {d['steered']['tokens_per_s']:.1f} tok/s, ratio steered/plain "
              f"{d['ratio_steered_over_plain_tokens_per_s']:.3f}")
    for e in extract:
        print(f"extraction, {e['prompts']}, {e['mean_prompt_tokens']:.0f} tokens/prompt: default "
              f"{e['default_pairs_per_s']:.2f} pairs/s, one at a time {e['one_at_a_time_pairs_per_s']:.2f} pairs/s, "
              f"ratio {e['ratio_default_over_one_at_a_time']:.2f}x; padding efficiency "
              f"{e['padding_efficiency_default']:.1%} (fixed batches of 16: {e['padding_efficiency_fixed_16']:.1%})")
    for name in ("sorted", "dataset_order", "split_90"):
        part = throughput[name]
        print(f"evaluation, {name}: {part['questions_per_minute']:.1f} questions/min, batches {part['batches']}, "
              f"padding efficiency (prompt + new tokens) {part['padding_efficiency']}")
    print(f"evaluation throughput, sorted / dataset order: {throughput['ratio_sorted_over_dataset_order']:.2f}x, "
          f"sorted / split to 90%: {throughput['ratio_sorted_over_split_90']:.2f}x")
    print(f"written to {args.out} ({report['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
