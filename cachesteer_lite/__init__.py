"""cachesteer_lite: KV cache steering (Belitsky et al., 2025) and its helpers, on transformers 5.x.

The package is built in layers whose imports point one way (``cachesteer_lite/README.md`` draws them)::

    core  <-  files  <-  tasks  <-  runs  <-  augmentation, style, teacher  <-  book, the command line

The public API below is the method and the book's workflow; each name lives in the module of its job.
Importing the package also registers the side studies' evaluation methods with the runner (cache augmentation).
"""

from . import augmentation  # noqa: F401  (registers the cache_augmentation method with the runner)
from .core.caa import ActivationVector, activation_steering, caa_generate, extract_activation_vector
from .core.cache import UnsupportedCacheError, add_at_position, new_cache, prefill, read_position
from .core.generation import Completion
from .core.models import DEFAULT_MODEL, EMBEDDED_MODELS, ModelLoadError, load_model
from .core.prompts import COT_PREFIX, Demonstration, PromptTooLongError, chat_prompt, contrastive_pair, encode
from .core.steering import append_offset, default_layers, generate, steered_cache, steered_generate
from .core.vectors import IncompatibleVectorError, SteeringVector, extract_steering_vector, model_fingerprint
from .files import book_file
from .runs.config import EvalConfig
from .runs.runner import evaluate
from .tasks.contrastive import build_contrastive_set
from .tasks.data import Item, load_items
from .tasks.task import TASKS, Task, get_task

__version__ = "0.2.0"

__all__ = [
    "COT_PREFIX",
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "TASKS",
    "ActivationVector",
    "Completion",
    "Demonstration",
    "EvalConfig",
    "IncompatibleVectorError",
    "Item",
    "ModelLoadError",
    "PromptTooLongError",
    "SteeringVector",
    "Task",
    "UnsupportedCacheError",
    "activation_steering",
    "add_at_position",
    "append_offset",
    "book_file",
    "build_contrastive_set",
    "caa_generate",
    "chat_prompt",
    "contrastive_pair",
    "default_layers",
    "encode",
    "evaluate",
    "extract_activation_vector",
    "extract_steering_vector",
    "generate",
    "get_task",
    "load_items",
    "load_model",
    "model_fingerprint",
    "new_cache",
    "prefill",
    "read_position",
    "steered_cache",
    "steered_generate",
]
