"""Evaluation runner: methods x tasks, resumable, with held-out hyperparameter selection.

A run answers every item of an evaluation split (or its first ``limit`` items) with one method, scores the
answers (:mod:`scoring`: the extraction step is never steered, for any method) and writes, in its run
directory:

* ``items.jsonl`` (``items_seed{S}.jsonl`` per sampling run): one record per item, appended as each batch
  completes, so an interrupted run resumes where it stopped and the file holds each item exactly once;
* ``run.json``: the settings the records were made with (a rerun with other settings is refused);
* ``results.json``: accuracy with a 95% Wilson interval, mean output length in tokens and words, the full
  configuration, library versions, hardware and wall time.

Methods live in a registry (:data:`METHODS`, :func:`register_method`): baseline, cot (the CoT prompt),
cache_steering and cache_steering_cot (the paper's prefix variant), caa (activation steering at one
layer, :mod:`caa`) and cache_augmentation (a trained coprocessor, :mod:`coprocessor`); further methods
plug in with their own ``prepare``. :func:`select_settings` picks
``c_values`` (or a method's options, such as CAA's layer and multiplier), the number of pairs and of
demonstrations on held-out items (ARC: validation; GSM8K, CSQA, PIQA: train items after the contrastive
pool), never on the evaluation set. Command line::

    python -m cachesteer_lite.evaluate --task arc_challenge --method cache_steering --limit 300
    python -m cachesteer_lite.evaluate --task arc_challenge csqa piqa --method baseline cot cache_steering \
        cache_steering_cot --limit 300 --max-new-tokens 256 --select --select-limit 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .caa import MODES as CAA_MODES
from .caa import ActivationVector, caa_generate, extract_activation_vector
from .contrastive import DEVIATIONS as CONTRASTIVE_DEVIATIONS
from .contrastive import build_contrastive_set, default_traces_path, offset_for
from .coprocessor import augmented_generate, checkpoint_state, load_augmenter
from .data import EVAL_SPLITS, TASKS, Item, check_task, load_items
from .models import DEFAULT_MODEL, load_model
from .prompts import chat_prompt, longest_first
from .provenance import hardware, versions
from .quality import degenerate_share
from .scoring import DEVIATIONS as SCORING_DEVIATIONS
from .scoring import Extraction, score_choices, score_number
from .steering import Completion, generate
from .traces import read_traces
from .vectors import SteeringVector, extract_steering_vector, model_id

PAPER_SEEDS: tuple[int, ...] = (1234, 1235, 1237, 1240, 1244)  # the paper's five sampling runs
PAPER_MAX_NEW_TOKENS = 768
# Sampling settings when the checkpoint's generation config does not sample (the paper's get_gen_kwargs).
PAPER_SAMPLING: dict[str, float | int] = {"temperature": 0.6, "top_p": 0.9, "top_k": 50}
# The paper's best settings for SmolLM2-360M-Instruct (best_args.yaml; paper-reference section 3.1), used
# when a steering run is given none. GSM8K's come from the gsm8k-oai rows.
PAPER_SETTINGS: dict[tuple[str, str], dict[str, float | int]] = {
    ("gsm8k", "cache_steering"): {"n_demonstrations": 5, "n_pairs": 200, "c_values": 1.0},
    ("gsm8k", "cache_steering_cot"): {"n_demonstrations": 5, "n_pairs": 300, "c_values": 1.0},
    ("arc_challenge", "cache_steering"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 6.0},
    ("arc_challenge", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 4.0},
    ("csqa", "cache_steering"): {"n_demonstrations": 12, "n_pairs": 400, "c_values": 6.0},
    ("csqa", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 6.0},
    ("piqa", "cache_steering"): {"n_demonstrations": 10, "n_pairs": 200, "c_values": 6.0},
    ("piqa", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 200, "c_values": 10.0},
}
# The paper's activation-steering runs (paper-reference section 4.1): 5 demonstrations and 200 pairs for every
# task, and for SmolLM2-360M these (layer, multiplier); PIQA and GSM8K from its job file, their results absent.
for _task in TASKS:
    PAPER_SETTINGS[(_task, "caa")] = {"n_demonstrations": 5, "n_pairs": 200}
PAPER_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("arc_challenge", "caa"): {"layer": 14, "multiplier": 3.0, "mode": "paper"},
    ("csqa", "caa"): {"layer": 15, "multiplier": 3.0, "mode": "paper"},
    ("piqa", "caa"): {"layer": 17, "multiplier": 3.0, "mode": "paper"},
    ("gsm8k", "caa"): {"layer": 16, "multiplier": 3.0, "mode": "paper"},
}
# The multipliers of the paper's CAA search (paper-reference section 4.1).
CAA_GRID_MULTIPLIERS: tuple[float, ...] = (0.5, 1.0, 3.0)
# Default grids of the held-out selection (the paper's ablation ranges, thinned for a CPU).
SELECTION_GRID: dict[str, tuple] = {
    "c_values": (1.0, 2.0, 4.0, 6.0, 8.0, 10.0),
    "n_pairs": (100,),
    "n_demonstrations": (5, 10),
}
Z_95 = 1.959963984540054

# (what, paper, ours) for the protocol; the book prints these with the scoring and contrastive ones.
DEVIATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "Stop strings",
        'stop at "Q:", "Question:", "</s>", "<|im_end|>" or EOS ("Question:" can cut legitimate reasoning)',
        "stop at the model's end-of-sequence token only",
    ),
    (
        "GSM8K steering position",
        "main configs append no offset token, so the vector is added to the penultimate prompt token",
        'the " " offset is always appended: the vector is added to the token it was read from',
    ),
    (
        "Hyperparameters",
        "best_args.yaml, chosen by a procedure that is not documented (the ablations ran on the test set)",
        "chosen by select_settings on held-out items (ARC validation; train items after the pool "
        "otherwise) and recorded with the grid; the paper's values are the defaults",
    ),
    (
        "Number of pairs",
        "up to 400 GPT-4o traces",
        "at most as many as the trace file covers (a smaller default is warned about and recorded)",
    ),
    (
        "Evaluation subset",
        "the whole evaluation split",
        "the whole split, or its first `limit` items in dataset order (recorded)",
    ),
    (
        "Batching",
        "sorted by prompt characters, batches of 32",
        "sorted by prompt tokens, batches of batch_size (default 16); fp32 batched numerics can flip a rare "
        "greedy near-tie",
    ),
    (
        "Sampling seeds",
        "one seed per run, set once (1234, 1235, 1237, 1240, 1244)",
        "the same run seeds, reseeded per batch (seed * 100003 + batch) so that a resumed run draws the same "
        "samples",
    ),
)


@dataclass(frozen=True)
class EvalConfig:
    """Everything that determines a run's records. ``None`` fields take defaults when the run starts:
    ``model`` the loaded model's name, ``split`` the paper's evaluation split, the steering settings the
    paper's (:data:`PAPER_SETTINGS`), the sampling settings the checkpoint's or the paper's."""

    task: str
    method: str
    model: str | None = None
    split: str | None = None
    start: int = 0
    limit: int | None = None
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS
    batch_size: int = 16
    force_choice: bool = True
    do_sample: bool = False
    seeds: tuple[int, ...] = PAPER_SEEDS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    c_values: float | None = None
    c_keys: float = 0.0
    n_pairs: int | None = None
    n_demonstrations: int | None = None
    selection: str = "nearest"
    selection_seed: int = 0
    traces: str | None = None
    style: str | None = None  # a reasoning style of the traces file (None: the default traces)
    layers: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # settings of plug-in methods (e.g. CAA's layer)


# Fields every method's records depend on; a method adds its own through Method.settings.
COMMON_SETTINGS: tuple[str, ...] = ("task", "method", "model", "split", "start", "limit", "max_new_tokens",
                                    "batch_size", "force_choice", "do_sample")
SAMPLING_SETTINGS: tuple[str, ...] = ("seeds", "temperature", "top_p", "top_k")
STEERING_SETTINGS: tuple[str, ...] = ("c_values", "c_keys", "n_pairs", "n_demonstrations", "selection",
                                      "selection_seed", "traces", "style", "layers")
CAA_SETTINGS: tuple[str, ...] = ("n_pairs", "n_demonstrations", "selection", "selection_seed", "traces", "style")

Responder = Callable[..., list[Completion]]
VECTOR_FILE = "steering_vector"  # a run's vector: steering_vector.safetensors + steering_vector.json


class Prepared(NamedTuple):
    """A method ready to answer: ``respond(prompts, **generation_kwargs)``, the text it appends to each
    prompt before the response (the offset token of cache steering, else ""), details to record, and the
    vector it steers with (saved beside the run's records, so that every result can be re-checked)."""

    respond: Responder
    offset: str
    details: dict
    vector: SteeringVector | ActivationVector | None = None


@dataclass(frozen=True)
class Method:
    """An evaluation method: whether prompts carry the CoT prefix, which config fields it reads (beyond
    :data:`COMMON_SETTINGS`), and ``prepare(model, tokenizer, config, memo, progress) -> Prepared``. ``memo`` is a
    dict shared across runs of one session, for reusing expensive state such as steering vectors. ``options``
    names the keys of ``EvalConfig.options`` the method reads (defaults: :data:`PAPER_OPTIONS`); ``vector_type``
    the class of vector it steers with (a resumed run reloads the one it saved instead of extracting it again)."""

    name: str
    description: str
    cot_prefix: bool
    settings: tuple[str, ...]
    prepare: Callable[[PreTrainedModel, PreTrainedTokenizerBase, EvalConfig, dict, bool], Prepared]
    options: tuple[str, ...] = ()
    vector_type: type | None = None  # the vector class it steers with, saved with (and reloaded by) each run


def _prepare_plain(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    def respond(prompts: Sequence[str], **kwargs) -> list[Completion]:
        return generate(model, tokenizer, prompts, progress=False, **kwargs)

    return Prepared(respond, "", {})


def _vector_key(vector_type: type, model: PreTrainedModel, config: EvalConfig) -> tuple:
    """What a method's vector depends on: its type, the model, the task and the contrastive pairs."""
    return (vector_type.__name__, model_id(model), config.task, config.n_pairs, config.n_demonstrations,
            config.selection, config.selection_seed, METHODS[config.method].cot_prefix, config.traces, config.style)


def _vector(vector_type: type, extract: Callable, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
            config: EvalConfig, memo: dict, progress: bool) -> tuple[Any, Any]:
    """(contrastive set, vector) of ``config``'s pairs, each built once per session (a vector found in ``memo``,
    for example the one a resumed run saved, is not extracted again)."""
    key = _vector_key(vector_type, model, config)
    contrastive_key = ("contrastive", *key[1:])
    if contrastive_key not in memo:
        memo[contrastive_key] = build_contrastive_set(
            tokenizer, config.task, n_pairs=config.n_pairs, n_demonstrations=config.n_demonstrations,
            selection=config.selection, seed=config.selection_seed,
            cot_prefix=METHODS[config.method].cot_prefix, traces=config.traces,
            style=config.style or "default",
        )
    if key not in memo:
        memo[key] = extract(model, tokenizer, memo[contrastive_key].pairs, batch_size=config.batch_size,
                            progress=progress)
    return memo[contrastive_key], memo[key]


def _saved_vector(method: Method, model: PreTrainedModel, config: EvalConfig, run_dir: Path, memo: dict) -> None:
    """Put the vector a resumed run saved into ``memo``, so that resuming does not extract it again. The run
    directory's settings match (``_claim_run_dir``), so it is the vector those settings give; a damaged or
    incompatible file is ignored and the vector extracted afresh."""
    path = run_dir / VECTOR_FILE
    key = _vector_key(method.vector_type, model, config)
    if key in memo or not path.with_suffix(".safetensors").is_file():
        return
    try:
        vector = method.vector_type.load(path)
        vector.check_compatible(model)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        warnings.warn(f"ignoring the saved vector of {run_dir} ({error}); extracting it again", stacklevel=3)
        return
    memo[key] = vector


def _prepare_cache_steering(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    contrastive, vector = _vector(SteeringVector, extract_steering_vector, model, tokenizer, config, memo, progress)
    offset = offset_for(config.task)

    def respond(prompts: Sequence[str], **kwargs) -> list[Completion]:
        return generate(model, tokenizer, prompts, vector, c_keys=config.c_keys, c_values=config.c_values,
                        layers=config.layers, offset=offset, progress=False, **kwargs)

    details = {"contrastive": contrastive.settings, "offset": offset, "vector_tokens": vector.metadata.token_texts,
               "layers": list(config.layers) if config.layers is not None else "all but layer 0"}
    return Prepared(respond, offset, details, vector)


def _prepare_caa(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    contrastive, vector = _vector(ActivationVector, extract_activation_vector, model, tokenizer, config, memo,
                                  progress)
    layer, multiplier, mode = (config.options[name] for name in ("layer", "multiplier", "mode"))

    def respond(prompts: Sequence[str], **kwargs) -> list[Completion]:
        return caa_generate(model, tokenizer, prompts, vector, layer=layer, multiplier=multiplier, mode=mode,
                            progress=False, **kwargs)

    details = {"contrastive": contrastive.settings, "vector_tokens": vector.metadata.token_texts, "layer": layer,
               "multiplier": multiplier, "mode": mode}
    return Prepared(respond, "", details, vector)


def _prepare_augmentation(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    """Cache augmentation (:mod:`coprocessor`): one augmentation at the end of each prompt by a trained
    coprocessor or pause-token control, read from the checkpoint (or run folder) the ``checkpoint`` option names."""
    checkpoint, state = checkpoint_state(config.options["checkpoint"])
    augmenter = load_augmenter(model, checkpoint)

    def respond(prompts: Sequence[str], **kwargs) -> list[Completion]:
        return augmented_generate(model, tokenizer, augmenter, prompts, progress=False, **kwargs)

    details = {"checkpoint": checkpoint.as_posix(), "step": state["step"], "augmenter": state["config"],
               "augmenter_sha256": _sha256(checkpoint / "augmenter.safetensors")}
    return Prepared(respond, "", details)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Add ``method`` to the registry (replacing one of the same name), making it runnable by name."""
    METHODS[method.name] = method


for _method in (
    Method("baseline", "the question in the chat template, nothing else", False, (), _prepare_plain),
    Method("cot", "the chat prompt followed by \"Let's think step by step.\"", True, (), _prepare_plain),
    Method("cache_steering", "one-shot KV cache steering of the chat prompt", False, STEERING_SETTINGS,
           _prepare_cache_steering, vector_type=SteeringVector),
    Method("cache_steering_cot", "cache steering of the CoT prompt, vector from prefixed pairs", True,
           STEERING_SETTINGS, _prepare_cache_steering, vector_type=SteeringVector),
    Method("caa", "activation steering (CAA) at one layer, from the same contrastive pairs", False,
           CAA_SETTINGS, _prepare_caa, ("layer", "multiplier", "mode"), vector_type=ActivationVector),
    Method("cache_augmentation", "one augmentation at the end of the prompt by a trained coprocessor (or pause "
           "tokens)", False, (), _prepare_augmentation, ("checkpoint",)),
):
    register_method(_method)


def get_method(name: str) -> Method:
    """The registered method ``name``; a ValueError lists the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def all_deviations() -> list[dict[str, str]]:
    """Every documented deviation from the paper: data and pairs, scoring, and the evaluation protocol."""
    groups = (("contrastive pairs", CONTRASTIVE_DEVIATIONS), ("scoring", SCORING_DEVIATIONS), ("protocol", DEVIATIONS))
    return [{"area": area, "what": what, "paper": paper, "ours": ours}
            for area, rows in groups for what, paper, ours in rows]


def trace_coverage(task: str, traces: str | Path | None = None, style: str = "default") -> int | None:
    """How many leading train items (0, 1, 2, ...) have a ``style`` trace; None when the task needs no trace
    file (GSM8K with its human solutions)."""
    if task == "gsm8k" and traces is None:
        return None
    indices = {t.index for t in read_traces(traces or default_traces_path(task))
               if (t.task, t.split, t.style) == (task, "train", style)}
    count = 0
    while count in indices:
        count += 1
    return count


def resolve_config(config: EvalConfig, model: PreTrainedModel) -> EvalConfig:
    """Fill the ``None`` fields that a run needs: the model name, the evaluation split and, for steering
    methods, the paper's settings (pairs capped at what the trace file covers, with a warning)."""
    check_task(config.task)
    method = get_method(config.method)
    config = replace(config, model=config.model or model_id(model), split=config.split or EVAL_SPLITS[config.task])
    check_task(config.task, config.split)
    config = _resolve_options(config, method)
    if "n_pairs" not in method.settings:
        return config
    paper = PAPER_SETTINGS.get((config.task, config.method), {})
    unset = [name for name in ("c_values", "n_pairs", "n_demonstrations")
             if name in method.settings and getattr(config, name) is None]
    filled = {name: paper[name] for name in unset if name in paper}
    missing = [name for name in unset if name not in filled]
    if missing:
        raise ValueError(f"method {config.method!r} on {config.task!r} needs {', '.join(missing)}")
    if "n_pairs" in filled:
        covered = trace_coverage(config.task, config.traces, config.style or "default")
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
    if "mode" in options and options["mode"] not in CAA_MODES:
        raise ValueError(f"unknown mode {options['mode']!r}; choose one of {', '.join(CAA_MODES)}")
    return replace(config, options=options)


def relevant_settings(config: EvalConfig) -> dict[str, Any]:
    """The config fields this run's records depend on, as JSON values."""
    names = COMMON_SETTINGS + (SAMPLING_SETTINGS if config.do_sample else ()) + get_method(config.method).settings
    values = {name: getattr(config, name) for name in names}
    if config.options:
        values["options"] = config.options
    return json.loads(json.dumps(values))


def sampling_kwargs(model: PreTrainedModel, config: EvalConfig) -> dict[str, Any]:
    """Generation settings: greedy, or sampling with the checkpoint's T/top-p/top-k when its generation
    config samples and the paper's 0.6/0.9/50 otherwise (explicit config values win)."""
    if not config.do_sample:
        return {"do_sample": False}
    checkpoint = model.generation_config
    if checkpoint.do_sample:
        base = {name: getattr(checkpoint, name) for name in PAPER_SAMPLING}
    else:
        base = dict(PAPER_SAMPLING)
    explicit = {"temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k}
    return {"do_sample": True, **base, **{k: v for k, v in explicit.items() if v is not None}}


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``correct / n`` (95% by default)."""
    if n <= 0:
        raise ValueError("a confidence interval needs at least one item")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends: 0/n and n/n touch 0 and 1 (the formula leaves rounding dust there).
    return (0.0 if correct == 0 else centre - half), (1.0 if correct == n else centre + half)


def read_records(path: Path, repair: bool = False) -> dict[int, dict]:
    """The records of an items file by item index, skipping what an interruption can leave behind.

    A last line cut off mid-write is dropped; a repeated index keeps its first record. Reading never changes
    the file unless ``repair`` is set: the runner, which resumes into the file, sets it so that the dropped
    lines are rewritten away (atomically) and every item appears exactly once.
    """
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records: dict[int, dict] = {}
    clean = True
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                clean = False
                break
            raise ValueError(f"{path}, line {number}: not valid JSON; the items file is damaged") from None
        if record["index"] in records or not line.endswith("\n"):
            clean = False
        records.setdefault(record["index"], record)
    if not clean and repair:
        _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()))
    return records


def _write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def _append_records(path: Path, records: Sequence[dict]) -> None:
    """Append a batch of records in one write and flush it to disk."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())


def _claim_run_dir(run_dir: Path, settings: dict[str, Any]) -> None:
    """Record the settings in ``run.json``, or check that an existing run used the same ones."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    if path.is_file():
        previous = json.loads(path.read_text())["settings"]
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(changed)}: "
                             f"{[previous.get(k) for k in changed]} there, {[settings.get(k) for k in changed]} "
                             "now); use another output directory")
        return
    _write_atomic(path, json.dumps({"settings": settings}, indent=2) + "\n")


def _extract(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, items: Sequence[Item],
             transcripts: Sequence[str], responses: Sequence[str]) -> list[Extraction]:
    """Score a batch: GSM8K by its last number, multiple choice through the (unsteered) suffix step."""
    if config.task == "gsm8k":
        return [score_number(response, item.answer) for item, response in zip(items, responses, strict=True)]
    return score_choices(model, tokenizer, transcripts, responses, [item.answer for item in items],
                         [item.labels for item in items], force_choice=config.force_choice,
                         batch_size=config.batch_size)


def _record(item: Item, completion: Completion, extraction: Extraction, batch: int, seconds: float,
            seed: int | None) -> dict:
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
    (:mod:`quality`), and how answers were extracted.

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
    (and write to ``run_dir/results.json``) the results.

    Items are batched longest prompt first in fixed batches; after each batch its records are appended to
    the items file and ``on_batch(done, total)`` is called. Items already in the file are not generated
    again. Greedy runs are deterministic; sampling runs use ``config.seeds`` and report mean and sample
    standard deviation over the runs.
    """
    started = time.perf_counter()
    config = resolve_config(config, model)
    method = get_method(config.method)
    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, relevant_settings(config))
    items = load_items(config.task, config.split, config.limit, config.start)
    if not items:
        raise ValueError(f"no {config.task} {config.split} items from {config.start} (limit {config.limit})")
    memo = memo if memo is not None else {}
    if method.vector_type is not None:
        _saved_vector(method, model, config, run_dir, memo)
    prepared = method.prepare(model, tokenizer, config, memo, progress)
    if prepared.vector is not None:
        prepared.vector.save(run_dir / VECTOR_FILE)
    prompts = [chat_prompt(tokenizer, item.question, method.cot_prefix) for item in items]
    order = longest_first(tokenizer, prompts)
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    generation = {**sampling_kwargs(model, config), "max_new_tokens": config.max_new_tokens,
                  "batch_size": config.batch_size}
    runs = []
    for seed in config.seeds if config.do_sample else (None,):
        path = run_dir / items_file(seed)
        done = read_records(path, repair=True)  # appending after a cut-off line would corrupt the file
        bar = tqdm(total=len(items), desc=f"{config.task} {config.method}" + ("" if seed is None else f" seed {seed}"),
                   unit="item", disable=not progress)
        bar.update(sum(item.index in done for item in items))
        for number, batch in enumerate(batches):
            todo = [i for i in batch if items[i].index not in done]
            if not todo:
                continue
            if seed is not None:
                torch.manual_seed(seed * 100_003 + number)
            clock = time.perf_counter()
            completions = prepared.respond([prompts[i] for i in todo], **generation)
            responses = [c.text for c in completions]
            extractions = _extract(model, tokenizer, config, [items[i] for i in todo],
                                   [prompts[i] + prepared.offset for i in todo], responses)
            seconds = time.perf_counter() - clock
            records = [_record(items[i], c, e, number, seconds, seed)
                       for i, c, e in zip(todo, completions, extractions, strict=True)]
            _append_records(path, records)
            done.update((r["index"], r) for r in records)
            bar.update(len(todo))
            if on_batch is not None:
                on_batch(sum(item.index in done for item in items), len(items))
        bar.close()
        runs.append({"seed": seed, "items_file": path.name, **summarise([done[item.index] for item in items])})
    results = _results(config, prepared, generation, runs, model, time.perf_counter() - started)
    _write_atomic(run_dir / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def _results(config: EvalConfig, prepared: Prepared, generation: dict, runs: list[dict], model: PreTrainedModel,
             wall_time: float) -> dict[str, Any]:
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
        "wall_time_s": round(wall_time, 3),
        "generation_seconds": round(sum(run["generation_seconds"] for run in runs), 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def held_out_items(task: str, pool_size: int) -> tuple[str, int]:
    """(split, first index) of the items hyperparameters are chosen on: ARC's validation split; for the
    other tasks, train items after the first ``pool_size`` (the contrastive pool), since their evaluation
    split is the only other labelled one."""
    check_task(task)
    held_out = ("validation", 0) if task == "arc_challenge" else ("train", pool_size)
    if held_out[0] == EVAL_SPLITS[task]:  # a guard: selection must never see the evaluation set
        raise AssertionError(f"held-out split of {task} is its evaluation split")
    return held_out


def select_settings(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base: EvalConfig,
    run_dir: str | Path,
    *,
    limit: int,
    c_values: Sequence[float] = SELECTION_GRID["c_values"],
    n_pairs: Sequence[int] = SELECTION_GRID["n_pairs"],
    n_demonstrations: Sequence[int] = SELECTION_GRID["n_demonstrations"],
    options: dict[str, Sequence] | None = None,
    memo: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the steering settings of a method on ``limit`` held-out items (:func:`held_out_items`), never
    the evaluation set: ``n_pairs``, ``n_demonstrations``, and ``c_values`` for cache steering or a grid of
    the method's ``options`` (CAA: ``{"layer": [...], "multiplier": [...]}``).

    Every grid point is a resumable run under ``run_dir/n{N}_k{K}_c{C}`` (options appended as ``_{name}{value}``);
    combinations with at least as many demonstrations as pairs are skipped. The grid's results and the best
    point (highest accuracy; the first in grid order on ties) are written to ``run_dir/selection.json`` and
    returned; :func:`apply_point` turns the best point into a config.
    """
    method = get_method(base.method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        raise ValueError(f"method {base.method!r} has no option {', '.join(unknown)} to select")
    steered = "c_values" in method.settings
    if not steered and not options:
        raise ValueError(f"method {base.method!r} has no steering settings to select")
    split, start = held_out_items(base.task, max(n_pairs))
    memo = memo if memo is not None else {}
    run_dir = Path(run_dir)
    grid, skipped = [], []
    for pairs, demos, c, *values in product(n_pairs, n_demonstrations, c_values if steered else (None,),
                                            *options.values()):
        point = {"n_pairs": pairs, "n_demonstrations": demos, **({"c_values": c} if steered else {}),
                 **dict(zip(options, values, strict=True))}
        if demos >= pairs:
            skipped.append(point)
            continue
        config = replace(apply_point(base, point), split=split, start=start, limit=limit)
        result = evaluate(model, tokenizer, config, run_dir / _point_name(point), memo=memo, progress=progress)
        grid.append({**point, "accuracy": result["accuracy"], "ci95": result["ci95"],
                     "mean_tokens": result["mean_tokens"], "mean_words": result["mean_words"]})
    if not grid:
        raise ValueError("the grid has no valid point: every n_demonstrations is >= every n_pairs")
    best = max(grid, key=lambda row: row["accuracy"])  # max keeps the first of equal rows
    selection = {
        "task": base.task,
        "method": base.method,
        "held_out": {"split": split, "start": start, "limit": limit},
        "evaluation_split": EVAL_SPLITS[base.task],
        "grid": grid,
        "skipped": skipped,
        "best": {k: v for k, v in best.items() if k not in ("accuracy", "ci95", "mean_tokens", "mean_words")},
        "best_accuracy": best["accuracy"],
    }
    _write_atomic(run_dir / "selection.json", json.dumps(selection, indent=2) + "\n")
    return selection


def apply_point(config: EvalConfig, point: dict[str, Any]) -> EvalConfig:
    """``config`` with a grid point's settings: config fields set directly, the rest as options."""
    fields = {name: value for name, value in point.items() if name in STEERING_SETTINGS}
    extra = {name: value for name, value in point.items() if name not in STEERING_SETTINGS}
    return replace(config, **fields, options={**config.options, **extra})


def _point_name(point: dict[str, Any]) -> str:
    """``n100_k5_c2`` for cache steering; options follow as ``_layer14_multiplier3``."""
    name = f"n{point['n_pairs']}_k{point['n_demonstrations']}"
    if "c_values" in point:
        name += f"_c{point['c_values']:g}"
    for key, value in point.items():
        if key not in ("n_pairs", "n_demonstrations", "c_values"):
            name += f"_{key}{value:g}" if isinstance(value, (int, float)) else f"_{key}{value}"
    return name


def run_directory(output_dir: str | Path, model: str, task: str, method: str) -> Path:
    """``output_dir/{model}/{task}/{method}``, the model name made path-safe."""
    return Path(output_dir) / model.replace("/", "__") / task / method


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cachesteer_lite.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", required=True, metavar="TASK", help=f"one or more of: {', '.join(TASKS)}")
    parser.add_argument("--method", nargs="+", required=True, metavar="METHOD",
                        help=f"one or more of: {', '.join(METHODS)}")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded model, local folder or hub id")
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 is much faster on a CPU shared with other jobs)")
    parser.add_argument("--output-dir", default="data/results", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="first N items of the evaluation split (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=PAPER_MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-force-choice", action="store_true")
    parser.add_argument("--sampling", action="store_true", help="sample (one run per seed) instead of greedy")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(PAPER_SEEDS))
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    steering = parser.add_argument_group("cache steering (defaults: the paper's SmolLM2 settings)")
    steering.add_argument("--c-values", type=float)
    steering.add_argument("--c-keys", type=float, default=0.0)
    steering.add_argument("--n-pairs", type=int)
    steering.add_argument("--n-demonstrations", type=int)
    steering.add_argument("--selection", choices=("nearest", "random"), default="nearest")
    steering.add_argument("--selection-seed", type=int, default=0)
    steering.add_argument("--traces", help="trace file for the demonstrations (default data/traces/{task}.jsonl)")
    steering.add_argument("--style", help="reasoning style of the traces to use (default: the default traces)")
    steering.add_argument("--layers", type=int, nargs="+", help="layers to steer (default: all but layer 0)")
    caa = parser.add_argument_group("activation steering, method caa (defaults: the paper's SmolLM2 settings)")
    caa.add_argument("--layer", type=int, help="the one layer CAA steers")
    caa.add_argument("--multiplier", type=float)
    caa.add_argument("--caa-mode", choices=CAA_MODES, help="paper (no KV cache, as the paper), cached or one_shot")
    augmentation = parser.add_argument_group("cache augmentation, method cache_augmentation")
    augmentation.add_argument("--checkpoint", help="a coprocessor (or pause-token) run or checkpoint folder")
    select = parser.add_argument_group("held-out selection of the steering settings")
    select.add_argument("--select", action="store_true", help="choose c_values, pairs and demonstrations on "
                        "held-out items first, then evaluate with the best")
    select.add_argument("--select-limit", type=int, default=100, help="held-out items per grid point")
    select.add_argument("--grid-c-values", type=float, nargs="+", default=list(SELECTION_GRID["c_values"]))
    select.add_argument("--grid-n-pairs", type=int, nargs="+", default=list(SELECTION_GRID["n_pairs"]))
    select.add_argument("--grid-n-demonstrations", type=int, nargs="+",
                        default=list(SELECTION_GRID["n_demonstrations"]))
    select.add_argument("--grid-layers", type=int, nargs="+", help="CAA layers (default: the paper's layer)")
    select.add_argument("--grid-multipliers", type=float, nargs="+", default=list(CAA_GRID_MULTIPLIERS),
                        help="CAA multipliers (default: the paper's search grid)")
    parser.add_argument("--paper-model", default=None, help="paper model to compare with (default: the closest)")
    return parser


def _cli_options(args: argparse.Namespace, method: Method) -> dict[str, Any]:
    """The command line's option values that ``method`` reads (CAA's layer, multiplier and mode; the
    augmentation's checkpoint)."""
    given = {"layer": args.layer, "multiplier": args.multiplier, "mode": args.caa_mode, "checkpoint": args.checkpoint}
    return {name: value for name, value in given.items() if value is not None and name in method.options}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate every task x method, optionally selecting steering settings first, and print
    the results beside the paper's."""
    from .results import comparison_table

    args = _parser().parse_args(argv)
    for task in args.task:
        check_task(task)
    for name in args.method:
        get_method(name)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, device=args.device)
    memo: dict = {}
    collected = []
    for task, name in product(args.task, args.method):
        config = EvalConfig(
            task=task, method=name, model=args.model, limit=args.limit, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, force_choice=not args.no_force_choice, do_sample=args.sampling,
            seeds=tuple(args.seeds), temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
            c_values=args.c_values, c_keys=args.c_keys, n_pairs=args.n_pairs, n_demonstrations=args.n_demonstrations,
            selection=args.selection, selection_seed=args.selection_seed, traces=args.traces, style=args.style,
            layers=tuple(args.layers) if args.layers else None, options=_cli_options(args, get_method(name)),
        )
        run_dir = run_directory(args.output_dir, args.model, task, name)
        method = get_method(name)
        if args.select and ("c_values" in method.settings or method.options):
            paper_layer = PAPER_OPTIONS.get((task, name), {}).get("layer")
            grids = {"layer": args.grid_layers or ([paper_layer] if paper_layer is not None else None),
                     "multiplier": args.grid_multipliers}
            chosen = select_settings(model, tokenizer, config, run_dir / "selection", limit=args.select_limit,
                                     c_values=args.grid_c_values, n_pairs=args.grid_n_pairs,
                                     n_demonstrations=args.grid_n_demonstrations, memo=memo,
                                     options={k: v for k, v in grids.items() if k in method.options and v})
            print(f"{task} {name}: selected {chosen['best']} (held-out accuracy {chosen['best_accuracy']:.3f})")
            config = apply_point(config, chosen["best"])
        result = evaluate(model, tokenizer, config, run_dir, memo=memo)
        spread = (f"sd {result['accuracy_sd']}" if result["ci95"] is None
                  else f"95% CI [{result['ci95'][0]:.4f}, {result['ci95'][1]:.4f}]")
        print(f"{task} {name}: accuracy {result['accuracy']:.4f} ({spread}), {result['mean_words']:.0f} words, "
              f"{result['wall_time_s']:.0f} s -> {run_dir / 'results.json'}")
        collected.append(result)
    print(comparison_table(collected, paper_model=args.paper_model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
