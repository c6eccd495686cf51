"""cachesteer_lite: KV cache steering (Belitsky et al., 2025) and its helpers, on transformers 5.x.

The public API in one place; each name lives in the module of its concern.
"""

from .cache import UnsupportedCacheError, add_at_position, new_cache, prefill, read_position
from .models import DEFAULT_MODEL, EMBEDDED_MODELS, ModelLoadError, load_model
from .prompts import COT_PREFIX, Demonstration, PromptTooLongError, chat_prompt, contrastive_pair, encode
from .steering import Completion, default_layers, generate, steered_cache, steered_generate
from .vectors import IncompatibleVectorError, SteeringVector, extract_steering_vector, model_fingerprint

__version__ = "0.1.0"

__all__ = [
    "COT_PREFIX",
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "Completion",
    "Demonstration",
    "IncompatibleVectorError",
    "ModelLoadError",
    "PromptTooLongError",
    "SteeringVector",
    "UnsupportedCacheError",
    "add_at_position",
    "chat_prompt",
    "contrastive_pair",
    "default_layers",
    "encode",
    "extract_steering_vector",
    "generate",
    "load_model",
    "model_fingerprint",
    "new_cache",
    "prefill",
    "read_position",
    "steered_cache",
    "steered_generate",
]
