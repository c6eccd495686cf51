"""Tiny random-weight models of four decoder architectures, saved as local model folders (no hub access).

    python scripts/tiny_models.py OUTDIR

writes ``OUTDIR/qwen2``, ``OUTDIR/llama3``, ``OUTDIR/phi3`` and ``OUTDIR/gemma3``, each a plain Hugging Face folder
that ``cachesteer_lite.load_model(folder)`` (or ``CACHESTEER_MODEL=folder`` for a notebook) reads like a hub model.
They exist to check that the library and every notebook run on architectures other than the embedded SmolLM2
(Llama architecture, ChatML template): their answers are noise, but their caches, templates and special tokens
have the shapes of the real models':

* ``qwen2``: Qwen2 (biases on q/k/v, tied embeddings), ChatML with Qwen2's default system prompt;
* ``llama3``: Llama with Llama-3 RoPE scaling and a Llama-3.2-style template that writes today's date into the
  system header (``strftime_now``; "26 Jul 2024" when the renderer has no clock);
* ``phi3``: Phi-3 (fused qkv and gate/up projections), Phi-3's ``<|user|>``/``<|assistant|>``/``<|end|>`` template;
* ``gemma3``: Gemma-3 text model (``Gemma3ForCausalLM``), sliding-window and full-attention layers mixed, Gemma's
  template, which has no system role (a system message is folded into the first user turn).

Every model is small (hidden size 64, 4 query heads sharing 2 KV heads of size 16, 2048 positions), seeded, and
uses the embedded SmolLM2 tokenizer (49,152 tokens) with the architecture's chat template and the special tokens
that template writes added to it. Building all four takes a few seconds on a CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import processors
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from cachesteer_lite.core.models import embedded_model_folder

ARCHITECTURES = ("qwen2", "llama3", "phi3", "gemma3")
SEED = 0
# Shared by all four: GQA with 4 query heads and 2 KV heads of size 16, enough positions for the notebooks' prompts.
SIZES = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             max_position_embeddings=2048)

QWEN2_TEMPLATE = (  # Qwen2-Instruct's template: ChatML, with a default system prompt when none is given
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""  # Llama-3.2-Instruct's template without its tool-calling branches

PHI3_TEMPLATE = (  # Phi-3-mini-instruct's template
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""  # Gemma-3-it's template, text only


def base_tokenizer() -> PreTrainedTokenizerBase:
    """A fresh copy of the embedded SmolLM2-135M-Instruct tokenizer (converted from its GGUF on first use)."""
    return AutoTokenizer.from_pretrained(embedded_model_folder("smollm2-135m-instruct"))


def _tokenizer(template: str, new_tokens: list[str], adds_bos: bool = False, **special: str | None
               ) -> PreTrainedTokenizerBase:
    """The SmolLM2 tokenizer with ``template``, the special tokens it writes, and the named special tokens set.

    ``adds_bos``: tokenising with ``add_special_tokens=True`` prepends the BOS, as the Llama-3, Phi-3 and Gemma
    tokenizers do (so a templated text that already starts with one gets two, the paper's extraction defect).
    """
    tokenizer = base_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": new_tokens}, replace_extra_special_tokens=False)
    for name, token in special.items():
        setattr(tokenizer, name, token)
    if adds_bos:
        bos = (tokenizer.bos_token, tokenizer.bos_token_id)
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos])
    tokenizer.chat_template = template
    return tokenizer


def qwen2_tokenizer() -> PreTrainedTokenizerBase:
    """ChatML: SmolLM2 already has ``<|im_start|>`` and ``<|im_end|>``; Qwen2 has no BOS."""
    return _tokenizer(QWEN2_TEMPLATE, [], bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def llama3_tokenizer() -> PreTrainedTokenizerBase:
    """Llama-3's header tokens; the template writes the BOS too. No padding token, as in Llama-3.2."""
    tokens = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    return _tokenizer(LLAMA3_TEMPLATE, tokens, adds_bos=True, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                      pad_token=None)


def phi3_tokenizer() -> PreTrainedTokenizerBase:
    """Phi-3's role tokens; the tokenizer adds its BOS ``<s>``, the template writes none."""
    tokens = ["<s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    return _tokenizer(PHI3_TEMPLATE, tokens, adds_bos=True, bos_token="<s>", eos_token="<|end|>",
                      pad_token="<|endoftext|>")


def gemma3_tokenizer() -> PreTrainedTokenizerBase:
    """Gemma's turn tokens; the template writes the BOS too."""
    tokens = ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"]
    return _tokenizer(GEMMA3_TEMPLATE, tokens, adds_bos=True, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerBase]] = {
    "qwen2": qwen2_tokenizer, "llama3": llama3_tokenizer, "phi3": phi3_tokenizer, "gemma3": gemma3_tokenizer,
}
MODEL_TYPES = {"qwen2": "qwen2", "llama3": "llama", "phi3": "phi3", "gemma3": "gemma3_text"}
EXTRA_EOS = {"llama3": "<|end_of_text|>", "phi3": "<|endoftext|>", "gemma3": "<end_of_turn>"}  # generation stops


def config_settings(name: str) -> dict:
    """What each architecture sets beyond the shared sizes (and what makes it structurally itself)."""
    if name == "qwen2":
        return dict(num_hidden_layers=2, tie_word_embeddings=True, rope_theta=1_000_000.0)
    if name == "llama3":
        return dict(num_hidden_layers=3, tie_word_embeddings=True, rope_parameters=dict(
            rope_type="llama3", rope_theta=500_000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=1024))
    if name == "phi3":
        return dict(num_hidden_layers=2, original_max_position_embeddings=2048, sliding_window=2047)
    if name == "gemma3":
        # Four layers: three local (sliding window of 128 tokens, shorter than the notebooks' few-shot prompts,
        # as Gemma-3's 512 are shorter than a 10-shot prompt) and one global, like Gemma-3's 5:1 pattern.
        return dict(num_hidden_layers=4, sliding_window=128, query_pre_attn_scalar=16,
                    layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"])
    raise ValueError(f"unknown architecture {name!r}; one of {', '.join(ARCHITECTURES)}")


def build(name: str, folder: Path) -> Path:
    """Write the tiny ``name`` model (random weights, seed 0) and its tokenizer to ``folder``."""
    tokenizer = TOKENIZERS[name]()
    ids = tokenizer.convert_tokens_to_ids
    eos = [ids(tokenizer.eos_token)] + ([ids(EXTRA_EOS[name])] if name in EXTRA_EOS else [])
    pad = ids(tokenizer.pad_token) if tokenizer.pad_token is not None else None
    bos = ids(tokenizer.bos_token) if tokenizer.bos_token is not None else None
    vocab_size = -(-len(tokenizer) // 64) * 64  # the added tokens, rounded up as real vocabularies are
    config = AutoConfig.for_model(MODEL_TYPES[name], vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos[0],
                                  pad_token_id=pad, **SIZES, **config_settings(name))
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.architectures = [type(model).__name__]
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = Path(argv[0])
    transformers_logging.disable_progress_bar()
    for name in ARCHITECTURES:
        print(build(name, out / name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
