"""What a run is: :class:`EvalConfig`, the settings an evaluation run's records depend on.

``None`` fields take defaults when the run starts (:func:`runner.resolve_config`): ``model`` the loaded model's
name, ``split`` the paper's evaluation split, the steering settings the paper's (:data:`paper.PAPER_SETTINGS`),
the sampling settings and seeds the checkpoint's or the paper's. Every value is checked when the config is made,
so a bad one fails before anything runs, with a sentence that says what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel

from ..core.checks import finite_number, integer
from ..tasks.contrastive import SELECTIONS
from .paper import PAPER_MAX_NEW_TOKENS, PAPER_SAMPLING


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
    seeds: tuple[int, ...] | None = None  # sampling runs only (default: the paper's five)
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

    def __post_init__(self) -> None:
        """Check every value (types, ranges, finite numbers); ValueError or TypeError names the field."""
        for name in ("task", "method"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a name (a string), got {getattr(self, name)!r}")
        integer("start", self.start, at_least=0)
        for name, least in (("max_new_tokens", 1), ("batch_size", 1), ("selection_seed", None)):
            integer(name, getattr(self, name), at_least=least)
        for name, least in (("limit", 1), ("n_pairs", 1), ("n_demonstrations", 1), ("top_k", 1)):
            if getattr(self, name) is not None:
                integer(name, getattr(self, name), at_least=least)
        finite_number("c_keys", self.c_keys)
        for name in ("c_values", "temperature", "top_p"):
            if getattr(self, name) is not None:
                finite_number(name, getattr(self, name))
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.do_sample, bool) or not isinstance(self.force_choice, bool):
            raise TypeError("do_sample and force_choice must be True or False")
        if self.seeds is not None:
            if not self.do_sample:
                raise ValueError("seeds are for sampling runs (do_sample=True); a greedy run has none")
            if not self.seeds:
                raise ValueError("a sampling run needs at least one seed")
            for seed in self.seeds:
                integer("each seed", seed)
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; valid selections: {', '.join(SELECTIONS)}")
        if self.layers is not None:
            for layer in self.layers:
                integer("each of layers", layer, at_least=0)
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict of a method's settings, got {self.options!r}")


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
