"""What a run is: :class:`EvalConfig`, the settings an evaluation run's records depend on.

``None`` fields take defaults when the run starts (:func:`runner.resolve_config`): ``model`` the loaded model's
name, ``split`` the paper's evaluation split, the steering settings the paper's (:data:`paper.PAPER_SETTINGS`),
the sampling settings the checkpoint's or the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel

from .paper import PAPER_MAX_NEW_TOKENS, PAPER_SAMPLING, PAPER_SEEDS


@dataclass(frozen=True)
class EvalConfig:
    """Everything that determines a run's records (see the module docstring for the ``None`` defaults)."""

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
# The contrastive pairs a vector is read from.
PAIR_SETTINGS: tuple[str, ...] = ("n_pairs", "n_demonstrations", "selection", "selection_seed", "traces", "style")
STEERING_SETTINGS: tuple[str, ...] = ("c_values", "c_keys", *PAIR_SETTINGS, "layers")


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
