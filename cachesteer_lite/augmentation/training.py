"""Training an augmenter with the look-ahead loss, resumably, and loading a trained one.

AdamW (no weight decay), constant learning rate, gradient norm clipped at 1; only the augmenter learns. The
samples of step s come from ``random.Random(f"{seed}:{s}")``, so the data order needs no saved state. Every
``save_every`` steps a checkpoint folder (trainable tensors and AdamW state as safetensors, settings, step and
losses as JSON) is written under a temporary name and renamed; only the latest is kept. Rerunning with more steps
resumes from it and ends bit for bit where an uninterrupted run ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.progress import progress_bar
from ..core.vector_files import VectorFileError, file_sha256
from ..core.vectors import model_fingerprint, model_id
from ..runs.records import read_json, write_json
from .augmenters import KINDS, Augmenter, Coprocessor, PauseTokens
from .lookahead import lookahead_losses, make_batch, tokenize_texts, valid_positions


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides the model and the texts.

    ``lora_rank`` None fine-tunes a full copy of the decoder (coprocessor only). ``max_tokens`` cuts each text;
    ``min_prefix`` is the shortest prefix sampled. ``steps`` and ``save_every`` may change between a run and
    its resumption; every other field must stay the same.
    """

    kind: str = "coprocessor"
    n_latents: int = 4
    n_ahead: int = 4
    lora_rank: int | None = 8
    lora_alpha: float = 16.0
    steps: int = 50
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_tokens: int = 96
    min_prefix: int = 8
    save_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        for name in ("n_latents", "n_ahead", "steps", "batch_size", "max_tokens", "min_prefix", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tokens < self.min_prefix + self.n_ahead:
            raise ValueError(f"max_tokens ({self.max_tokens}) leaves no room for a prefix of {self.min_prefix} "
                             f"tokens plus {self.n_ahead} ahead tokens")


RESUMABLE_FIELDS: frozenset[str] = frozenset({"steps", "save_every"})


class RunSize(NamedTuple):
    """A training configuration and how much held-out text its evaluation reads."""

    config: TrainConfig
    eval_texts: int | None  # held-out texts scored (None: all)
    eval_positions: int  # sampled split points per held-out text


RUN_SIZES: dict[str, RunSize] = {
    # CPU, minutes: LoRA, short texts, a few dozen steps.
    "quick": RunSize(TrainConfig(), eval_texts=40, eval_positions=4),
    # A GPU: full fine-tuning, 16 latents and 16 ahead tokens, longer texts.
    "full": RunSize(TrainConfig(n_latents=16, n_ahead=16, lora_rank=None, steps=3000, batch_size=32, lr=1e-4,
                                max_tokens=256, save_every=250), eval_texts=None, eval_positions=16),
}


def build_augmenter(model: PreTrainedModel, config: TrainConfig) -> Augmenter:
    """A fresh, seeded augmenter of the configured kind."""
    if config.kind == "pause":
        return PauseTokens(model, config.n_latents, seed=config.seed)
    return Coprocessor(model, config.n_latents, lora_rank=config.lora_rank, lora_alpha=config.lora_alpha,
                       seed=config.seed)


def training_samples(lengths: Sequence[int], step: int, config: TrainConfig) -> list[tuple[int, int]]:
    """The (text, split point) samples of one step: texts uniformly, then a split point uniformly.

    Drawn from a generator seeded by (seed, step) alone, so a resumed run sees exactly the same data.
    """
    rng = random.Random(f"{config.seed}:{step}")
    samples = []
    for _ in range(config.batch_size):
        text = rng.randrange(len(lengths))
        samples.append((text, rng.choice(valid_positions(lengths[text], config.n_ahead, config.min_prefix))))
    return samples


def texts_digest(texts: Sequence[str]) -> str:
    """SHA-256 of the training texts, stored with a run so that it only resumes on the same texts."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


CHECKPOINT_PREFIX = "checkpoint-"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint folder with the most steps in ``run_dir``, or None."""
    folders = [path for path in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}[0-9]*") if (path / "state.json").is_file()]
    return max(folders, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]), default=None)


# What a checkpoint's state.json holds, and the JSON type of each entry.
STATE_FIELDS: dict[str, type] = {"config": dict, "step": int, "losses": list, "trainable_parameters": int,
                                 "model_id": str, "fingerprint": dict, "texts_sha256": str}


def checkpoint_state(path: str | Path) -> tuple[Path, dict]:
    """The checkpoint folder ``path`` names (a checkpoint, or a run folder: its latest) and its state.json, after
    checking that the state holds every field, of the right type, and a valid training configuration."""
    path = Path(path)
    checkpoint = path if (path / "state.json").is_file() else latest_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"{path} holds no checkpoint (a {CHECKPOINT_PREFIX}N folder with a state.json)")
    try:
        state = read_json(checkpoint / "state.json")
    except ValueError as error:
        raise VectorFileError(f"{checkpoint / 'state.json'}: not valid JSON ({error})") from None
    wrong = [f"{name} ({kind.__name__})" for name, kind in STATE_FIELDS.items()
             if not isinstance(state, dict) or not isinstance(state.get(name), kind)]
    if wrong:
        raise VectorFileError(f"{checkpoint / 'state.json'}: missing or mistyped {', '.join(wrong)}")
    try:
        TrainConfig(**state["config"])
    except (TypeError, ValueError) as error:
        raise VectorFileError(f"{checkpoint / 'state.json'}: its training configuration is invalid ({error})") from None
    return checkpoint, state


def read_trainable_tensors(checkpoint: Path, state: dict, device: str) -> dict[str, torch.Tensor]:
    """The augmenter's tensors of a checkpoint, after checking them against the checksum its state records
    (safetensors has none of its own; a checkpoint written before checksums were recorded loads with a warning)."""
    path = checkpoint / "augmenter.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a checkpoint holds augmenter.safetensors beside its state.json")
    recorded, found = state.get("augmenter_sha256"), file_sha256(path)
    if recorded is None:
        warnings.warn(f"{checkpoint / 'state.json'} records no checksum (written before they were): "
                      "the trained tensors cannot be verified", stacklevel=3)
    elif recorded != found:
        raise VectorFileError(f"{path}: sha256 {found} differs from the {recorded} recorded in state.json: the "
                              "file was changed or damaged after it was written")
    try:
        tensors = load_file(path, device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise VectorFileError(f"{path}: not a readable safetensors file ({error})") from None
    bad = [name for name, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise VectorFileError(f"{path}: NaN or infinite values in {bad[:3]}")
    return tensors


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's per-parameter state as flat safetensors entries ``{param index}.{name}``."""
    return {f"{index}.{name}": value.contiguous() for index, state in optimizer.state_dict()["state"].items()
            for name, value in state.items()}


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore state written by :func:`_optimizer_tensors`; hyperparameters come from the fresh optimizer."""
    state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    optimizer.load_state_dict({"state": dict(state), "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(run_dir: Path, augmenter: Augmenter, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write ``checkpoint-{step}`` under a temporary name, rename it, then delete older checkpoints."""
    target = run_dir / f"{CHECKPOINT_PREFIX}{state['step']:06d}"
    staging = run_dir / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # left behind by an interrupted save
    staging.mkdir()
    try:
        save_file(augmenter.trainable_state(), staging / "augmenter.safetensors")
        save_file(_optimizer_tensors(optimizer), staging / "optimizer.safetensors")
        checksum = file_sha256(staging / "augmenter.safetensors")  # safetensors keeps none of its own
        write_json(staging / "state.json", {**state, "augmenter_sha256": checksum})
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in run_dir.glob(f"{CHECKPOINT_PREFIX}[0-9]*"):
        if int(old.name[len(CHECKPOINT_PREFIX) :]) < state["step"]:
            shutil.rmtree(old)
    return target


def _resume(
    checkpoint: Path, state: dict, augmenter: Augmenter, optimizer: torch.optim.Optimizer, config: TrainConfig,
    identity: dict,
) -> None:
    """Load a checkpoint into a fresh augmenter and optimizer after checking it belongs to this run."""
    saved = TrainConfig(**state["config"])
    changed = [f.name for f in fields(TrainConfig)
               if f.name not in RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(config, f.name)]
    changed += [key for key, value in identity.items() if state.get(key) != value]
    if changed:
        raise ValueError(f"{checkpoint.parent} holds a run with other {', '.join(changed)}; resume with the same "
                         "model, texts and settings (only steps and save_every may change), or use another folder")
    if state["step"] > config.steps:
        raise ValueError(f"{checkpoint} has already trained {state['step']} steps, more than the {config.steps} asked")
    device = str(next(augmenter.parameters()).device)
    augmenter.load_trainable_state(read_trainable_tensors(checkpoint, state, device))
    _load_optimizer_tensors(optimizer, load_file(checkpoint / "optimizer.safetensors", device=device))


class TrainResult(NamedTuple):
    """The trained augmenter and the loss of every step (resumed steps included)."""

    augmenter: Augmenter
    losses: list[float]


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    config: TrainConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train an augmenter with the look-ahead loss on ``texts``; only the augmenter learns.

    Resumes from the latest checkpoint in ``run_dir`` when there is one (same model, texts and settings).
    Texts too short for one sample (``min_prefix`` + ``n_ahead`` tokens) are skipped.
    """
    run_dir = Path(run_dir)
    token_lists = [ids for ids in tokenize_texts(tokenizer, texts, config.max_tokens)
                   if len(valid_positions(len(ids), config.n_ahead, config.min_prefix))]
    if not token_lists:
        raise ValueError(f"no text has the {config.min_prefix} + {config.n_ahead} tokens a training sample needs")
    lengths = [len(ids) for ids in token_lists]
    augmenter = build_augmenter(model, config)
    trainable = [p for p in augmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    identity = {"model_id": model_id(model), "fingerprint": model_fingerprint(model),
                "texts_sha256": texts_digest(texts)}
    start, losses = 0, []
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        _, state = checkpoint_state(checkpoint)
        _resume(checkpoint, state, augmenter, optimizer, config, identity)
        start, losses = state["step"], list(state["losses"])
    run_dir.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(range(start, config.steps), initial=start, total=config.steps,
                       desc=f"training {config.kind}", enabled=progress)
    for step in bar:
        batch = make_batch(token_lists, training_samples(lengths, step, config), config.n_ahead, model.device)
        loss = lookahead_losses(model, augmenter, batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            state = {"config": asdict(config), "step": step + 1, "losses": losses,
                     "trainable_parameters": augmenter.n_trainable, **identity}
            save_checkpoint(run_dir, augmenter, optimizer, state)
    return TrainResult(augmenter, losses)


def load_augmenter(model: PreTrainedModel, path: str | Path) -> Augmenter:
    """The trained augmenter of a checkpoint folder, or of a run folder's latest checkpoint, for ``model``."""
    checkpoint, state = checkpoint_state(path)
    if state["fingerprint"] != model_fingerprint(model):
        raise ValueError(f"{checkpoint} was trained on {state['model_id']!r} {state['fingerprint']}, which does not "
                         f"fit {model_id(model)!r} {model_fingerprint(model)}")
    augmenter = build_augmenter(model, TrainConfig(**state["config"]))
    device = str(next(augmenter.parameters()).device)
    augmenter.load_trainable_state(read_trainable_tensors(checkpoint, state, device))
    return augmenter
