"""The command line of cache augmentation (``--size quick`` runs in minutes on a CPU; ``full`` is for a GPU)::

    python -m cachesteer_lite augmentation train --n-latents 4 --steps 50 --out runs/cop4
    python -m cachesteer_lite augmentation train --kind pause --n-latents 4 --steps 50 --out runs/pause4
    python -m cachesteer_lite augmentation perplexity runs/cop4 runs/pause4
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.models import DEFAULT_MODEL, load_model
from ..core.vectors import model_id
from ..runs.cli import add_progress_argument, any_int, finite_float, non_negative_int, positive_int
from ..runs.provenance import run_record
from ..runs.records import write_json
from .augmenters import KINDS
from .lookahead import AheadPerplexity, paired_difference, perplexity_by_ahead_position
from .texts import TextSplit, training_texts
from .training import RUN_SIZES, TrainConfig, checkpoint_state, load_augmenter, texts_digest, train


def _add_arguments(commands: argparse._SubParsersAction) -> None:
    train_cmd = commands.add_parser("train", help="train a coprocessor or the pause-token control")
    train_cmd.add_argument("--out", required=True, type=Path, help="run folder (resumed when it has a checkpoint)")
    train_cmd.add_argument("--kind", choices=KINDS, default="coprocessor")
    train_cmd.add_argument("--n-latents", type=positive_int)
    train_cmd.add_argument("--n-ahead", type=positive_int)
    train_cmd.add_argument("--lora-rank", type=non_negative_int, help="0: fine-tune a full copy of the decoder")
    train_cmd.add_argument("--steps", type=positive_int)
    train_cmd.add_argument("--batch-size", type=positive_int)
    train_cmd.add_argument("--lr", type=finite_float)
    train_cmd.add_argument("--seed", type=any_int)
    train_cmd.set_defaults(handler=run_train)
    ppl = commands.add_parser("perplexity", help="held-out perplexity by ahead position: plain model vs runs")
    ppl.add_argument("runs", nargs="*", type=Path, help="run or checkpoint folders (the plain model is always scored)")
    ppl.add_argument("--n-ahead", type=positive_int, help="default: the runs' N_A, else the run size's")
    ppl.add_argument("--limit", type=positive_int, help="held-out texts to score (default: the run size's)")
    ppl.add_argument("--positions", type=positive_int, help="split points per text (default: the run size's)")
    ppl.add_argument("--json", type=Path, help="also write the results here")
    ppl.set_defaults(handler=run_perplexity)
    for command in (train_cmd, ppl):
        command.add_argument("--size", choices=tuple(RUN_SIZES), default="quick")
        command.add_argument("--model", default=DEFAULT_MODEL, help="embedded model, local folder or hub id")
        command.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
        command.add_argument("--threads", type=positive_int, help="CPU threads for torch")
        command.add_argument("--held-out-fraction", type=finite_float, default=0.05)
        command.add_argument("--split-seed", type=any_int, default=0)
        add_progress_argument(command)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``augmentation train`` and ``augmentation perplexity`` to the command line."""
    parser = commands.add_parser("augmentation", help="train and score cache augmentation (coprocessor, pause tokens)",
                                 description=__doc__.splitlines()[0])
    _add_arguments(parser.add_subparsers(dest="augmentation_command", required=True))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The run size's configuration with the command line's overrides."""
    given = {"kind": args.kind, "n_latents": args.n_latents, "n_ahead": args.n_ahead, "steps": args.steps,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    overrides = {name: value for name, value in given.items() if value is not None}
    if args.lora_rank is not None:
        overrides["lora_rank"] = args.lora_rank or None
    return TrainConfig(**{**asdict(RUN_SIZES[args.size].config), **overrides})


def _perplexity_table(rows: list[tuple[str, int, AheadPerplexity]]) -> str:
    """One line per model: N_L, then the perplexity at each ahead position and the mean loss."""
    n_ahead = len(rows[0][2].loss)
    header = f"{'model':<32} {'N_L':>4} " + " ".join(f"{f'ppl@{i + 1}':>9}" for i in range(n_ahead)) + "  mean loss"
    lines = [header]
    for name, n_latents, result in rows:
        cells = " ".join(f"{value:9.3f}" for value in result.perplexity)
        lines.append(f"{name:<32} {n_latents:>4} {cells}  {result.mean_loss:9.4f}")
    return "\n".join(lines)


def _setup(args: argparse.Namespace) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, TextSplit]:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, device=args.device, progress=not args.no_progress)
    return model, tokenizer, training_texts(args.held_out_fraction, args.split_seed)


def run_train(args: argparse.Namespace) -> int:
    """Train one augmenter (resuming its run folder when it has a checkpoint)."""
    model, tokenizer, split = _setup(args)
    config = _train_config(args)
    print(f"{config.kind}: N_L={config.n_latents}, N_A={config.n_ahead}; {len(split.train)} training texts, "
          f"{len(split.held_out)} held out")
    result = train(model, tokenizer, [d.text for d in split.train], config, args.out, progress=not args.no_progress)
    print(f"{result.augmenter.n_trainable:,} trainable values; losses: "
          + " ".join(f"{loss:.3f}" for loss in result.losses))
    return 0


def run_perplexity(args: argparse.Namespace) -> int:
    """Score the perplexity of runs by ahead position on held-out text, against the plain model."""
    model, tokenizer, split = _setup(args)
    size = RUN_SIZES[args.size]
    loaded = [(path, load_augmenter(model, path), checkpoint_state(path)[1]) for path in args.runs]
    horizons = {state["config"]["n_ahead"] for _, _, state in loaded}
    if args.n_ahead is None and len(horizons) > 1:
        raise SystemExit(f"the runs use different N_A {sorted(horizons)}; choose one with --n-ahead")
    n_ahead = args.n_ahead or (horizons.pop() if horizons else size.config.n_ahead)
    limit = args.limit if args.limit is not None else size.eval_texts
    texts = [d.text for d in split.held_out][:limit]
    options = dict(n_ahead=n_ahead, positions_per_text=args.positions or size.eval_positions,
                   max_tokens=size.config.max_tokens, min_prefix=size.config.min_prefix)
    started = time.perf_counter()
    rows: list[tuple[str, int, AheadPerplexity, tuple[Path, dict] | None]] = [
        ("plain model", 0, perplexity_by_ahead_position(model, tokenizer, texts, None, **options,
                                                        progress=not args.no_progress), None)]
    for path, augmenter, state in loaded:
        result = perplexity_by_ahead_position(model, tokenizer, texts, augmenter, **options,
                                              progress=not args.no_progress)
        rows.append((f"{augmenter.kind} {path.name} @{state['step']}", augmenter.n_latents, result, (path, state)))
    print(f"{len(texts)} held-out texts, {rows[0][2].n_samples} split points, N_A={n_ahead}")
    print(_perplexity_table([row[:3] for row in rows]))
    if args.json:
        plain = rows[0][2]
        record = {
            "model": model_id(model),
            "settings": {**options, "held_out_texts": len(texts), "held_out_fraction": args.held_out_fraction,
                         "split_seed": args.split_seed, "texts_sha256": texts_digest(texts)},
            "rows": [{"run": name, "n_latents": n, **result.to_dict(),
                      **({} if run is None else {
                          "kind": run[1]["config"]["kind"], "path": run[0].as_posix(), "step": run[1]["step"],
                          "train_config": run[1]["config"], "difference_vs_plain": paired_difference(result, plain)})}
                     for name, n, result, run in rows],
            "wall_time_s": round(time.perf_counter() - started, 3),
            **run_record(model.device),
        }
        write_json(args.json, record)
    return 0
