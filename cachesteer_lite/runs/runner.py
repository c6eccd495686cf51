"""The evaluation runner: one method on the items of one task, resumable, scored and stored with its provenance.

A run answers every item of an evaluation split (or its first ``limit`` items) with one method, scores the
answers (:mod:`tasks.scoring`: the extraction step is never steered, for any method) and writes, in its run
directory:

* ``items.jsonl`` (``items_seed{S}.jsonl`` per sampling run): one record per item, appended as each batch
  completes (:mod:`records`), so an interrupted run resumes where it stopped and the file holds each item once;
* ``run.json``: the settings the records were made with (a rerun with other settings is refused) and every
  session that worked on the run, so that the wall time of a resumed run adds up (:mod:`run_log`);
* ``results.json``: accuracy with a 95% Wilson interval, mean output length in tokens and words, the share of
  degenerate answers, the padding efficiency of its batches (real tokens over the token slots they allocate,
  prompt plus ``max_new_tokens`` a row), the full configuration, library versions, hardware and wall time.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.batching import DECODING_MIN_EFFICIENCY, length_batches, padding_efficiency, token_lengths
from ..core.deviations import Deviation
from ..core.generation import Completion
from ..core.progress import progress_bar
from ..core.prompts import chat_prompt
from ..core.vectors import model_id
from ..tasks.contrastive import trace_coverage
from ..tasks.data import Item, load_items
from ..tasks.quality import degenerate_share
from ..tasks.scoring import Extraction, score_choices, score_number
from ..tasks.task import Task, get_task
from .config import COMMON_SETTINGS, SAMPLING_SETTINGS, EvalConfig, sampling_kwargs
from .methods import VECTOR_FILE, Method, Prepared, get_method, reuse_saved_vector
from .paper import PAPER_OPTIONS, PAPER_SEEDS, PAPER_SETTINGS
from .parallel import World, batch_share, current_world, gather_records, main_first, process_group, read_in_step
from .provenance import hardware, versions
from .records import append_new_records, append_records, write_json
from .run_log import RunLog, finished_results
from .statistics import wilson_interval

# (what, paper, ours, why) for the evaluation protocol.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "Stop strings",
        'stop at "Q:", "Question:", `</s>`, `<|im_end|>` or EOS',
        "stop at the model's end-of-sequence token only",
        '"Question:" can cut legitimate reasoning short',
    ),
    Deviation(
        "Hyperparameters",
        "`best_args.yaml`, chosen by a procedure that is not documented (the ablations ran on the test set)",
        "chosen on held-out items (ARC validation; train items after the pool otherwise) and recorded with the "
        "grid; the paper's values are the defaults",
        "settings chosen on the evaluation set overstate accuracy",
    ),
    Deviation(
        "Number of pairs",
        "up to 400 GPT-4o traces",
        "at most as many as the trace file covers (a smaller default is warned about and recorded)",
        "fewer pairs make a noisier vector",
    ),
    Deviation(
        "Batching",
        "sorted by prompt characters, batches of 32",
        "sorted by prompt tokens, batches of `batch_size` (default 16): the fewest batches, since each further "
        "batch costs a decoding run (`core.batching`)",
        "float32 batched numerics can flip a rare greedy near-tie",
    ),
    Deviation(
        "Sampling seeds",
        "one seed per run, set once (1234, 1235, 1237, 1240, 1244)",
        "the same run seeds, reseeded per batch (seed * 100003 + batch)",
        "a resumed run draws the same samples as an uninterrupted one",
    ),
)


def check_config(config: EvalConfig) -> EvalConfig:
    """Check what ``config`` names and needs before any model loads: the task and split, the method, its
    options, and a value (or a paper default) for every steering setting it reads. Returns ``config``."""
    task = get_task(config.task)
    if config.split is not None:
        task.check_split(config.split)
    _paper_settings(_resolve_options(config, get_method(config.method)))
    return config


def _paper_settings(config: EvalConfig) -> dict[str, Any]:
    """The paper's value of each steering setting ``config``'s method reads and ``config`` leaves unset."""
    method = get_method(config.method)
    paper = PAPER_SETTINGS.get((config.task, config.method), {})
    unset = [name for name in ("c_values", "n_pairs", "n_demonstrations")
             if name in method.settings and getattr(config, name) is None]
    missing = [name for name in unset if name not in paper]
    if missing:
        raise ValueError(f"method {config.method!r} on {config.task!r} needs {', '.join(missing)}")
    return {name: paper[name] for name in unset}


def resolve_config(config: EvalConfig, model: PreTrainedModel) -> EvalConfig:
    """Fill the ``None`` fields that a run needs: the model name, the evaluation split, the sampling seeds and,
    for steering methods, the paper's settings (pairs capped at what the trace file covers, with a warning)."""
    check_config(config)
    task = get_task(config.task)
    config = replace(config, model=config.model or model_id(model),
                     split=task.check_split(config.split or task.eval_split),
                     seeds=(config.seeds or PAPER_SEEDS) if config.do_sample else None)
    config = _resolve_options(config, get_method(config.method))
    filled = _paper_settings(config)
    if "n_pairs" in filled:
        covered = trace_coverage(task, config.traces, config.style or "default")
        if covered is not None and covered < filled["n_pairs"]:
            warnings.warn(f"the paper used {filled['n_pairs']} pairs for {config.task}, but the trace file covers "
                          f"{covered} items: using {covered} pairs", stacklevel=2)
            filled["n_pairs"] = covered
    return replace(config, **filled)


def _resolve_options(config: EvalConfig, method: Method) -> EvalConfig:
    """Check ``config.options`` against the method's option names and fill the unset ones with the paper's."""
    unknown = sorted(set(config.options) - set(method.options))
    if unknown:
        valid = ", ".join(method.options) or "none"
        raise ValueError(f"method {method.name!r} has no option {', '.join(map(repr, unknown))}; its options: {valid}")
    if not method.options:
        return config
    options = {**PAPER_OPTIONS.get((config.task, method.name), {}), **config.options}
    missing = [name for name in method.options if name not in options]
    if missing:
        raise ValueError(f"method {method.name!r} on {config.task!r} needs the option(s) {', '.join(missing)}")
    if method.check_options is not None:
        method.check_options(options)
    return replace(config, options=options)


def relevant_settings(config: EvalConfig) -> dict[str, Any]:
    """The config fields this run's records depend on, as JSON values."""
    names = COMMON_SETTINGS + (SAMPLING_SETTINGS if config.do_sample else ()) + get_method(config.method).settings
    values: dict[str, Any] = {name: getattr(config, name) for name in names}
    if config.options:
        values["options"] = config.options
    return json.loads(json.dumps(values))


def _extract(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task, config: EvalConfig,
             items: Sequence[Item], transcripts: Sequence[str], responses: Sequence[str]) -> list[Extraction]:
    """Score a batch: GSM8K by its last number, multiple choice through the (unsteered) suffix step."""
    if task.numeric:
        return [score_number(response, item.answer) for item, response in zip(items, responses, strict=True)]
    return score_choices(model, tokenizer, transcripts, responses, [item.answer for item in items],
                         [item.labels for item in items], force_choice=config.force_choice,
                         batch_size=config.batch_size)


def _record(item: Item, completion: Completion, extraction: Extraction, batch: int, seconds: float,
            seed: int | None) -> dict[str, Any]:
    return {
        "index": item.index,
        "source_id": item.source_id,
        "gold": item.answer,
        "prediction": extraction.prediction,
        "correct": extraction.correct,
        "extraction": extraction.method,
        "response": completion.text,
        "extraction_suffix": extraction.text[len(completion.text):],
        "n_tokens": completion.n_tokens,
        "n_words": len(completion.text.split()),
        "batch": batch,
        "batch_seconds": round(seconds, 3),
        "seed": seed,
    }


def summarise(records: Sequence[dict]) -> dict[str, Any]:
    """Accuracy with its 95% Wilson interval, mean tokens and words, the share of degenerate (looping) answers
    (:mod:`tasks.quality`), and how answers were extracted.

    Tokens are the ones the model generated, its end-of-sequence token included (an offset token is part of
    the prompt); words are the whitespace-separated words of the response, as the paper's "(Nw)" counts.
    """
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    low, high = wilson_interval(correct, n)
    batch_seconds = {r["batch"]: r["batch_seconds"] for r in records}
    return {
        "n": n,
        "n_correct": correct,
        "accuracy": correct / n,
        "ci95": [low, high],
        "mean_tokens": statistics.fmean(r["n_tokens"] for r in records),
        "mean_words": statistics.fmean(r["n_words"] for r in records),
        "degenerate": degenerate_share([r["response"] for r in records]),
        "extraction": dict(Counter(r["extraction"] for r in records).most_common()),
        "generation_seconds": round(sum(batch_seconds.values()), 3),
    }


def items_file(seed: int | None) -> str:
    """The items file of a greedy run, or of the sampling run with ``seed``."""
    return "items.jsonl" if seed is None else f"items_seed{seed}.jsonl"


def run_directory(output_dir: str | Path, model: str, task: str, method: str, sampling: bool = False) -> Path:
    """``output_dir/{model}/{task}/{method}`` (the model name made path-safe), and ``.../sampling`` for a sampling
    run, so that a method's greedy run and its sampled one are both kept."""
    folder = Path(output_dir) / model.replace("/", "__") / task / method
    return folder / "sampling" if sampling else folder


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: EvalConfig,
    run_dir: str | Path,
    *,
    memo: dict | None = None,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``config`` on its items, resuming from ``run_dir`` if it holds part of the same run, and return
    (and write to ``run_dir/results.json``) the results; a run that ``run_dir`` holds finished is read back and
    left as it is.

    Items are batched sorted by prompt length (:func:`batching.length_batches`); after each batch its records are
    appended to the items file and ``on_batch(done, total)`` is called. Items already in the file are not
    generated again. Greedy runs are deterministic; sampling runs use ``config.seeds`` and report mean and sample
    standard deviation over the runs. Processes started by a launcher (``torchrun``) share the batches and the
    files, and each returns the results of the whole run (:mod:`parallel`).
    """
    world = current_world()
    with process_group(world):
        return _evaluate(model, tokenizer, config, Path(run_dir), world, memo, progress and world.is_main, on_batch)


def _evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, run_dir: Path,
              world: World, memo: dict | None, progress: bool, on_batch: Callable[[int, int], None] | None
              ) -> dict[str, Any]:
    """:func:`evaluate` in one process of ``world``: only the main one writes ``run.json`` and ``results.json``."""
    started = time.perf_counter()
    config = resolve_config(config, model)
    task, method = get_task(config.task), get_method(config.method)
    items = load_items(task, config.split, config.limit, config.start)
    if not items:
        raise ValueError(f"no {config.task} {config.split} items from {config.start} (limit {config.limit})")
    settings, files = relevant_settings(config), [items_file(seed) for seed in config.seeds or (None,)]
    finished = finished_results(run_dir, settings, files, (item.index for item in items))
    if finished is not None:  # left as it is: its results keep the provenance of the sessions that made them
        return finished
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir, settings, writes=world.is_main)
    memo = memo if memo is not None else {}
    with main_first(world):  # the others load the vector the main process saved: all steer with the same one
        saved = reuse_saved_vector(method, model, config, run_dir, memo)
        prepared = method.prepare(model, tokenizer, config, memo, progress)
        if prepared.vector is not None and world.is_main and not saved:  # a saved vector is never rewritten
            prepared.vector.save(run_dir / VECTOR_FILE)
    prompts = [chat_prompt(tokenizer, item.question, method.cot_prefix) for item in items]
    lengths = token_lengths(tokenizer, prompts)
    batches = length_batches(lengths, max_rows=config.batch_size, extra=config.max_new_tokens,
                             min_efficiency=DECODING_MIN_EFFICIENCY)  # the fewest batches, of sorted neighbours
    generation = {**sampling_kwargs(model, config), "max_new_tokens": config.max_new_tokens,
                  "batch_size": config.batch_size}
    runs = []
    for seed in config.seeds or (None,):  # resolved: the sampling seeds, or one greedy run
        path = run_dir / items_file(seed)
        done = read_in_step(path, world)  # repaired: appending after a cut-off line would corrupt the file
        found = sum(item.index in done for item in items)
        log.update(time.perf_counter() - started, found=found)
        bar = progress_bar(total=len(items), unit="item", enabled=progress,
                           desc=f"{config.task} {config.method}" + ("" if seed is None else f" seed {seed}"))
        bar.update(found)
        pending = [number for number, batch in enumerate(batches) if any(items[i].index not in done for i in batch)]
        for number in batch_share(pending, world):
            todo = [i for i in batches[number] if items[i].index not in done]
            if seed is not None:
                torch.manual_seed(seed * 100_003 + number)
            clock = time.perf_counter()
            completions = prepared.respond([prompts[i] for i in todo], **generation)
            extractions = _extract(model, tokenizer, task, config, [items[i] for i in todo],
                                   [prompts[i] + prepared.offset for i in todo], [c.text for c in completions])
            seconds = time.perf_counter() - clock
            records = [_record(items[i], c, e, number, seconds, seed)
                       for i, c, e in zip(todo, completions, extractions, strict=True)]
            if world.parallel:
                records = append_new_records(path, records)
            else:
                append_records(path, records)
            log.update(time.perf_counter() - started, added=0 if world.parallel else len(records))  # parallel: below
            done.update((r["index"], r) for r in records)
            bar.update(len(todo))
            if on_batch is not None:
                on_batch(sum(item.index in done for item in items), len(items))
        bar.close()
        if world.parallel:  # every process has answered its share: read what all of them wrote
            done = gather_records(path, world)
            log.update(time.perf_counter() - started, added=sum(item.index in done for item in items) - found)
        runs.append({"seed": seed, "items_file": path.name, **summarise([done[item.index] for item in items])})
    log.update(time.perf_counter() - started)
    results = {**_results(config, prepared, generation, runs, model, log),
               "padding_efficiency": round(padding_efficiency(lengths, batches, extra=config.max_new_tokens), 4)}
    if world.is_main:
        write_json(run_dir / "results.json", results)
    return results


def _results(config: EvalConfig, prepared: Prepared, generation: dict, runs: list[dict], model: PreTrainedModel,
             log: RunLog) -> dict[str, Any]:
    """The results file: accuracy over the runs, lengths, the config and provenance, and the wall time of every
    session that worked on the run (generation time is summed from the records, so both cover every session)."""
    accuracies = [run["accuracy"] for run in runs]
    sampled = config.do_sample
    head = runs[0]
    return {
        "task": config.task,
        "method": config.method,
        "model": config.model,
        "split": config.split,
        "n": head["n"],
        "accuracy": statistics.fmean(accuracies),
        "accuracy_sd": statistics.stdev(accuracies) if sampled and len(runs) > 1 else None,
        "ci95": None if sampled else head["ci95"],
        "mean_tokens": statistics.fmean(run["mean_tokens"] for run in runs),
        "mean_words": statistics.fmean(run["mean_words"] for run in runs),
        "degenerate": statistics.fmean(run["degenerate"] for run in runs),
        "runs": runs,
        "config": json.loads(json.dumps(asdict(config))),
        "generation": {k: v for k, v in generation.items() if k != "batch_size"},
        "method_details": prepared.details,
        "versions": versions(),
        "hardware": hardware(model.device),
        "wall_time_s": log.wall_time_s,
        "sessions": len(log.sessions),
        "resumes": log.resumes,
        "generation_seconds": round(sum(run["generation_seconds"] for run in runs), 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
