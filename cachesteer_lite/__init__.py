"""cachesteer_lite: KV cache steering (Belitsky et al., 2025) and its helpers, on transformers 5.x.

The public API in one place; each name lives in the module of its concern.
"""

from .caa import ActivationVector, activation_steering, caa_generate, extract_activation_vector
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
    "ActivationVector",
    "Completion",
    "Demonstration",
    "IncompatibleVectorError",
    "ModelLoadError",
    "PromptTooLongError",
    "SteeringVector",
    "UnsupportedCacheError",
    "activation_steering",
    "add_at_position",
    "caa_generate",
    "chat_prompt",
    "contrastive_pair",
    "default_layers",
    "encode",
    "extract_activation_vector",
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
