"""Loading models by name: the embedded models, and a clear error for every way loading can fail."""

from __future__ import annotations

import pytest
import torch

from cachesteer_lite import EMBEDDED_MODELS, ModelLoadError, load_model
from cachesteer_lite.core.models import EmbeddedModel, cache_dir, resolve_model_path


def test_embedded_smollm2_is_converted_once_and_answers(smollm2):
    model, tokenizer = smollm2
    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert model.dtype == torch.float32 and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_a_local_folder_loads_with_the_requested_dtype(smollm2):
    folder = resolve_model_path("smollm2-135m-instruct")
    model, _ = load_model(folder, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16
    assert model.name_or_alias == folder


def test_unknown_name_lists_the_embedded_models():
    with pytest.raises(ValueError, match="smollm2-135m-instruct") as error:
        load_model("no-such-model")
    assert "owner/name" in str(error.value)


def test_hub_id_while_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        load_model("HuggingFaceTB/SmolLM2-360M-Instruct")


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    def locate_missing_package():
        import a_package_that_is_not_installed  # noqa: F401

    fake = EmbeddedModel("fake-model", "pip install a-package-that-is-not-installed", locate_missing_package)
    monkeypatch.setitem(EMBEDDED_MODELS, "fake-model", fake)
    monkeypatch.setenv("CACHESTEER_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError, match="pip install a-package-that-is-not-installed"):
        load_model("fake-model")
