"""scripts/tiny_models.py: four tiny random-weight architectures as local folders that the library loads and steers."""

from __future__ import annotations

import pytest
import torch

import cachesteer_lite as cs

from conftest import script_module


@pytest.fixture(scope="module")
def tiny_models():
    return script_module("scripts/tiny_models.py")


@pytest.fixture(scope="module")
def folders(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert tiny_models.main([str(out)]) == 0
    return {name: out / name for name in tiny_models.ARCHITECTURES}


EXPECTED = {  # architecture, how the prompt ends, what its system header holds (a default prompt, the fixed date)
    "qwen2": ("Qwen2ForCausalLM", "<|im_start|>assistant\n", "You are a helpful assistant."),
    "llama3": ("LlamaForCausalLM", "<|start_header_id|>assistant<|end_header_id|>\n\n", "Today Date: 26 Jul 2024"),
    "phi3": ("Phi3ForCausalLM", "<|end|>\n<|assistant|>\n", None),
    "gemma3": ("Gemma3ForCausalLM", "<end_of_turn>\n<start_of_turn>model\n", None),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_folder_loads_templates_and_steers(folders, name):
    model, tokenizer = cs.load_model(str(folders[name]), device="cpu", progress=False)
    architecture, prompt_end, system = EXPECTED[name]
    assert cs.model_fingerprint(model) == {"architecture": architecture, "n_layers": model.config.num_hidden_layers,
                                           "n_kv_heads": 2, "head_dim": 16}
    prompt = cs.chat_prompt(tokenizer, "What is 2 + 2?")
    assert prompt.endswith(prompt_end) and (system is None or system in prompt)
    ids = cs.encode(tokenizer, [prompt]).input_ids[0].tolist()
    assert ids.count(tokenizer.bos_token_id) == (0 if tokenizer.bos_token_id is None else 1)  # exactly one BOS
    demo = cs.Demonstration("What is 1 + 1?", "One and one make two.", "2")
    vector = cs.extract_steering_vector(model, tokenizer, [cs.contrastive_pair(tokenizer, [demo], "What is 3 + 3?")],
                                        progress=False)
    assert float(vector.values[0].abs().max()) == 0.0  # layer 0: the same last token in both prompts
    steered = cs.generate(model, tokenizer, [prompt], vector, c_values=4.0, max_new_tokens=3, progress=False)
    assert steered[0].n_tokens >= 1


def test_gemma3_mixes_sliding_window_and_full_layers(folders):
    model, _ = cs.load_model(str(folders["gemma3"]), device="cpu", progress=False)
    cache = cs.prefill(model, torch.ones(1, 200, dtype=torch.long), torch.ones(1, 200, dtype=torch.long))
    lengths = [layer.keys.shape[-2] for layer in cache.layers]
    assert max(lengths) == 200 and min(lengths) < 200  # a prompt longer than the window: the local layers trim it


def test_building_is_deterministic(tiny_models, folders, tmp_path):
    again = tiny_models.build("phi3", tmp_path / "phi3")
    assert (again / "model.safetensors").read_bytes() == (folders["phi3"] / "model.safetensors").read_bytes()
