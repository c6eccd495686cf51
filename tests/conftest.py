"""Shared test setup.

The task data comes from ``$CACHESTEER_DATA_DIR``, by default ``shared/data`` beside the repository. The real
embedded models are loaded once per test session (the first load converts the GGUF, later loads take <1 s).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("CACHESTEER_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

REPO = Path(__file__).resolve().parents[1]


def script_module(path: str):
    """A script of the repository (``scripts/x.py``, ``benchmarks/y.py``: not packages), imported from its file."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, float32 on the CPU."""
    from cachesteer_lite import load_model

    torch.manual_seed(0)
    return load_model("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def gemma3():
    """(model, tokenizer) of the embedded Gemma-3-270M base model (sliding-window layers), float32 on the CPU."""
    from cachesteer_lite import load_model

    return load_model("gemma3-270m", device="cpu")


def tiny_model(model_type: str = "llama", **overrides):
    """A tiny randomly initialised decoder (for edge cases the real models cannot reach quickly), float32, eval."""
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = dict(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, pad_token_id=2, eos_token_id=2, bos_token_id=1,
    )
    settings.update(overrides)
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.name_or_alias = f"tiny-random-{model_type}"
    return model


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on a free loopback port while the block runs; yields the base URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
