"""The evaluation methods and their registry: how each method answers a batch of prompts.

Built in: ``baseline`` (the question in the chat template), ``offset_control`` (the baseline with the task's
offset token appended: the paper's control, cache steering without the edit), ``cot`` (the CoT prompt),
``cache_steering`` and ``cache_steering_cot`` (the paper's prefix variant), and ``caa`` (activation steering at one
layer). Side studies add their own with :func:`register_method` when they are imported (cache augmentation
registers ``cache_augmentation``), so the runner never imports them.

A method's steering strength has one name, :attr:`Method.strength`: ``c_values`` for cache steering, ``multiplier``
for CAA; :func:`strength_of` reads it from any stored config, so that both can be plotted on one axis.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from safetensors import SafetensorError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.caa import MODES as CAA_MODES
from ..core.caa import ActivationVector, caa_generate, extract_activation_vector
from ..core.generation import Completion
from ..core.steering import generate
from ..core.vectors import SteeringVector, extract_steering_vector, model_id
from ..tasks.contrastive import ContrastiveSet, build_contrastive_set
from ..tasks.task import get_task
from .config import PAIR_SETTINGS, STEERING_SETTINGS, EvalConfig

Responder = Callable[..., list[Completion]]
VECTOR_FILE = "steering_vector"  # a run's vector: steering_vector.safetensors + steering_vector.json


class Vector(Protocol):
    """What the runner needs of a steering vector: a check against the model, saving and loading."""

    def check_compatible(self, model: PreTrainedModel) -> None: ...

    def save(self, path: str | Path) -> tuple[Path, Path]: ...

    @classmethod
    def load(cls, path: str | Path) -> Vector: ...


class Prepared(NamedTuple):
    """A method ready to answer: ``respond(prompts, **generation_kwargs)``, the text it appends to each
    prompt before the response (the offset token of cache steering, else ""), details to record, and the
    vector it steers with (saved beside the run's records, so that every result can be re-checked)."""

    respond: Responder
    offset: str
    details: dict
    vector: Vector | None = None


Prepare = Callable[[PreTrainedModel, PreTrainedTokenizerBase, EvalConfig, dict, bool], Prepared]


@dataclass(frozen=True)
class Method:
    """An evaluation method: whether prompts carry the CoT prefix, which config fields it reads (beyond
    :data:`config.COMMON_SETTINGS`), and ``prepare(model, tokenizer, config, memo, progress) -> Prepared``. ``memo``
    is a dict shared across runs of one session, for reusing expensive state such as steering vectors. ``options``
    names the keys of ``EvalConfig.options`` the method reads (defaults: :data:`paper.PAPER_OPTIONS`);
    ``vector_type`` the class of vector it steers with (a resumed run reloads the one it saved instead of
    extracting it again); ``strength`` the setting that scales its edit; ``check_options`` refuses bad option
    values before anything runs."""

    name: str
    description: str
    cot_prefix: bool
    settings: tuple[str, ...]
    prepare: Prepare
    options: tuple[str, ...] = ()
    vector_type: type[Vector] | None = None
    strength: str | None = None
    check_options: Callable[[dict[str, Any]], None] | None = None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Add ``method`` to the registry (replacing one of the same name), making it runnable by name."""
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    """The registered method ``name``; a ValueError lists the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def strength_of(method: str, config: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of the steering strength in a stored run's ``config``, or None for a method without one."""
    name = get_method(method).strength
    if name is None:
        return None
    return name, config[name] if name in config else config["options"][name]


def _prepare_plain(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    def respond(prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return generate(model, tokenizer, prompts, progress=False, **kwargs)

    return Prepared(respond, "", {})


def _prepare_offset_control(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    offset = get_task(config.task).offset

    def respond(prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return generate(model, tokenizer, prompts, offset=offset, progress=False, **kwargs)

    return Prepared(respond, offset, {"offset": offset})


def vector_key(vector_type: type[Vector], model: PreTrainedModel, config: EvalConfig) -> tuple:
    """What a method's vector depends on: its type, the model, the task and the contrastive pairs."""
    return (vector_type.__name__, model_id(model), config.task, config.n_pairs, config.n_demonstrations,
            config.selection, config.selection_seed, get_method(config.method).cot_prefix, config.traces, config.style)


def _contrastive_and_vector(vector_type: type[Vector], extract: Callable[..., Any], model: PreTrainedModel,
                            tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict,
                            progress: bool) -> tuple[ContrastiveSet, Any]:
    """(contrastive set, vector) of ``config``'s pairs, each built once per session (a vector found in ``memo``,
    for example the one a resumed run saved, is not extracted again)."""
    if config.n_pairs is None or config.n_demonstrations is None:
        raise ValueError("resolve the config first: the number of pairs and of demonstrations are not set")
    key = vector_key(vector_type, model, config)
    contrastive_key = ("contrastive", *key[1:])
    if contrastive_key not in memo:
        memo[contrastive_key] = build_contrastive_set(
            tokenizer, get_task(config.task), n_pairs=config.n_pairs, n_demonstrations=config.n_demonstrations,
            selection=config.selection, seed=config.selection_seed, cot_prefix=get_method(config.method).cot_prefix,
            traces=config.traces, style=config.style or "default",
        )
    if key not in memo:
        memo[key] = extract(model, tokenizer, memo[contrastive_key].pairs, batch_size=config.batch_size,
                            progress=progress)
    return memo[contrastive_key], memo[key]


def reuse_saved_vector(method: Method, model: PreTrainedModel, config: EvalConfig, run_dir: Path, memo: dict) -> bool:
    """Put the vector a resumed run saved into ``memo``, replacing one this session extracted for the same settings:
    a run is always steered by the vector its records were made with, and resuming does not extract it again. The
    run directory's settings match (the runner checked them), so it is the vector those settings give, up to the
    last digits of batched arithmetic. Returns whether a saved vector was loaded; a damaged or incompatible file is
    ignored (with a warning) and the vector extracted afresh."""
    path = run_dir / VECTOR_FILE
    if method.vector_type is None or not path.with_suffix(".safetensors").is_file():
        return False
    try:
        vector = method.vector_type.load(path)
        vector.check_compatible(model)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        warnings.warn(f"ignoring the saved vector of {run_dir} ({error}); extracting it again", stacklevel=3)
        return False
    memo[vector_key(method.vector_type, model, config)] = vector
    return True


def _prepare_cache_steering(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    contrastive, vector = _contrastive_and_vector(SteeringVector, extract_steering_vector, model, tokenizer, config,
                                                  memo, progress)
    offset = get_task(config.task).offset
    if config.c_values is None:
        raise ValueError("resolve the config first: c_values is not set")
    c_values = config.c_values

    def respond(prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return generate(model, tokenizer, prompts, vector, c_keys=config.c_keys, c_values=c_values,
                        layers=config.layers, offset=offset, progress=False, **kwargs)

    details = {"contrastive": contrastive.settings, "offset": offset, "vector_tokens": vector.metadata.token_texts,
               "layers": list(config.layers) if config.layers is not None else "all but layer 0"}
    return Prepared(respond, offset, details, vector)


def _prepare_caa(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: EvalConfig, memo: dict, progress: bool
) -> Prepared:
    contrastive, vector = _contrastive_and_vector(ActivationVector, extract_activation_vector, model, tokenizer,
                                                  config, memo, progress)
    layer, multiplier, mode = (config.options[name] for name in ("layer", "multiplier", "mode"))

    def respond(prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return caa_generate(model, tokenizer, prompts, vector, layer=layer, multiplier=multiplier, mode=mode,
                            progress=False, **kwargs)

    details = {"contrastive": contrastive.settings, "vector_tokens": vector.metadata.token_texts, "layer": layer,
               "multiplier": multiplier, "mode": mode}
    return Prepared(respond, "", details, vector)


def _check_caa_options(options: dict[str, Any]) -> None:
    """Refuse an unknown CAA mode before anything runs."""
    if options["mode"] not in CAA_MODES:
        raise ValueError(f"unknown mode {options['mode']!r}; choose one of {', '.join(CAA_MODES)}")


for _method in (
    Method("baseline", "the question in the chat template, nothing else", False, (), _prepare_plain),
    Method("offset_control", "the baseline prompt with the task's offset token appended, no cache edit", False,
           (), _prepare_offset_control),
    Method("cot", "the chat prompt followed by \"Let's think step by step.\"", True, (), _prepare_plain),
    Method("cache_steering", "one-shot KV cache steering of the chat prompt", False, STEERING_SETTINGS,
           _prepare_cache_steering, vector_type=SteeringVector, strength="c_values"),
    Method("cache_steering_cot", "cache steering of the CoT prompt, vector from prefixed pairs", True,
           STEERING_SETTINGS, _prepare_cache_steering, vector_type=SteeringVector, strength="c_values"),
    Method("caa", "activation steering (CAA) at one layer, from the same contrastive pairs", False,
           PAIR_SETTINGS, _prepare_caa, ("layer", "multiplier", "mode"), vector_type=ActivationVector,
           strength="multiplier", check_options=_check_caa_options),
):
    register_method(_method)
