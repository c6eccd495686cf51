"""Any device, any dtype: every library function hands the model tensors on the model's own device, and edits a
cache or a residual stream in its own device and dtype.

These machines have no GPU, so PyTorch's ``meta`` device stands in for "a device that is not the CPU": a tiny
random model moved there computes shapes but no numbers (eager attention; transformers' SDPA masks read values).
A CPU tensor that reaches it fails, as it would on a GPU. Two stand-ins make that strict:

* :class:`OneDevicePerOp` refuses any operation that mixes devices, as CUDA does (meta kernels let an in-place
  add of a CPU tensor through);
* :func:`door` stops a call where it hands tensors to the model, at its forward pass or at ``generate`` (which
  reads values, so cannot run on meta), and reports what was handed in.

A bfloat16 model on the CPU then runs the same functions for real: vectors are float32, caches stay bfloat16.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers.cache_utils import Cache

from cachesteer_lite import (
    SteeringVector,
    activation_steering,
    add_at_position,
    append_offset,
    caa_generate,
    chat_prompt,
    encode,
    extract_steering_vector,
    generate,
    load_model,
    prefill,
    read_position,
    steered_cache,
    steered_generate,
)
from cachesteer_lite.augmentation.generation import augmented_inputs
from cachesteer_lite.core.caa import (
    ActivationMetadata,
    ActivationVector,
    _steering_hook,
    activation_fingerprint,
    extract_activation_vector,
)
from cachesteer_lite.core.models import resolve_dtype
from cachesteer_lite.core.vectors import VectorMetadata, model_fingerprint
from cachesteer_lite.tasks.scoring import forced_choices, score_choices

from conftest import tiny_model

META = torch.device("meta")
PROMPTS = ["What is the capital of France?", "Name a fruit."]
PAIRS = [("Think first. The answer is A.", "The answer is A."), ("Reason: B.", "B.")]


class OneDevicePerOp(TorchDispatchMode):
    """Refuse an operation whose tensors (CPU scalars aside) sit on different devices, as CUDA does; copies
    between devices (``.to``) stay allowed."""

    COPIES = (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() > 0}
        if len(devices) > 1 and func not in self.COPIES:
            raise AssertionError(f"{func} mixes devices {sorted(map(str, devices))}")
        return func(*args, **kwargs)


class Handed(Exception):
    """Raised at the model's door: every tensor a library function handed to the model, by name."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__(sorted(tensors))
        self.tensors = tensors


def tensors_in(values: dict) -> dict[str, torch.Tensor]:
    """The tensors among ``values``, and the keys and values of every cache among them, by name."""
    found = {name: value for name, value in values.items() if isinstance(value, torch.Tensor)}
    for name, value in values.items():
        if isinstance(value, Cache):
            for i, layer in enumerate(layer for layer in value.layers if layer.keys is not None):
                found.update({f"{name}[{i}].keys": layer.keys, f"{name}[{i}].values": layer.values})
    return found


@contextmanager
def door(model, at: str) -> Iterator[None]:
    """Stop every call at the model's forward pass (``at="forward"``) or at ``generate`` (earlier forward passes,
    such as a steered prefill, run) with :class:`Handed`."""

    def stop_generate(*args, **kwargs):
        raise Handed(tensors_in({**{f"arg{i}": arg for i, arg in enumerate(args)}, **kwargs}))

    def stop_forward(module, args: tuple, kwargs: dict) -> None:
        stop_generate(*args, **kwargs)

    if at == "generate":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(model, "generate", stop_generate)
            yield
        return
    handle = model.register_forward_pre_hook(stop_forward, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def handed(call, model, at: str = "generate") -> dict[str, torch.Tensor]:
    """What ``call()`` hands the model at its first forward pass or at ``generate``."""
    with door(model, at), OneDevicePerOp(), pytest.raises(Handed) as stopped:
        call()
    return stopped.value.tensors


def assert_on(tensors: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype | None = None) -> None:
    """Every tensor is on ``device``; every floating one (the cache's) has ``dtype``."""
    assert tensors
    for name, tensor in tensors.items():
        assert tensor.device == device, f"{name} is on {tensor.device}, the model on {device}"
        if dtype is not None and tensor.is_floating_point():
            assert tensor.dtype == dtype, f"{name} is {tensor.dtype}, the model {dtype}"


def kv_vector(model) -> SteeringVector:
    """A float32 key/value vector of the model's shape (on the CPU, as extraction returns it)."""
    fp = model_fingerprint(model)
    shape = (fp["n_layers"], fp["n_kv_heads"], fp["head_dim"])
    return SteeringVector(torch.ones(shape), torch.ones(shape), VectorMetadata(model.name_or_alias, fp, -1, ["\n"], 1))


def activation_vector(model) -> ActivationVector:
    """A float32 activation vector of the model's shape, on the CPU."""
    fp = activation_fingerprint(model)
    directions = torch.ones((fp["n_layers"], fp["hidden_size"]))
    return ActivationVector(directions, ActivationMetadata(model.name_or_alias, fp, -1, ["\n"], 1))


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def meta_model(request):
    """A tiny bfloat16 model on the meta device (eager attention: SDPA's masks read values)."""
    model = tiny_model(request.param, attn_implementation="eager").to(META, torch.bfloat16)
    model.name_or_alias = f"tiny-random-{request.param}"
    return model


@pytest.fixture(scope="module")
def cpu_batch(smollm2):
    """Two chat prompts, tokenised as ``encode`` returns them: on the CPU."""
    tokenizer = smollm2[1]
    return encode(tokenizer, [chat_prompt(tokenizer, q) for q in PROMPTS])


# --- on the meta device: what the model is handed -----------------------------------------------------------


def test_prefill_and_steered_cache_run_on_the_models_device(meta_model, cpu_batch, smollm2):
    with OneDevicePerOp():
        cache = prefill(meta_model, cpu_batch.input_ids, cpu_batch.attention_mask)
        ids, mask = append_offset(smollm2[1], cpu_batch.input_ids, cpu_batch.attention_mask)
        steered = steered_cache(meta_model, ids, mask, kv_vector(meta_model), c_keys=1.0, c_values=4.0)
    for built in (cache, steered):
        assert_on(tensors_in({"cache": built}), META, torch.bfloat16)


def test_steered_generation_hands_generate_the_models_device(meta_model, cpu_batch, smollm2):
    tokenizer, vector = smollm2[1], kv_vector(meta_model)
    ids, mask = append_offset(tokenizer, cpu_batch.input_ids, cpu_batch.attention_mask)
    given = handed(lambda: steered_generate(meta_model, ids, mask, vector, c_values=4.0, max_new_tokens=2),
                   meta_model)
    assert {"input_ids", "attention_mask", "past_key_values[1].values"} <= set(given)
    assert_on(given, META, torch.bfloat16)
    prompts = [chat_prompt(tokenizer, q) for q in PROMPTS]
    for steer in ({}, {"vector": vector, "c_values": 4.0}):
        given = handed(lambda steer=steer: generate(meta_model, tokenizer, prompts, max_new_tokens=2,
                                                    progress=False, **steer), meta_model)
        assert_on(given, META, torch.bfloat16)


def test_extraction_hands_the_model_its_device(meta_model, smollm2):
    tokenizer = smollm2[1]
    for extract in (extract_steering_vector, extract_activation_vector):
        given = handed(lambda extract=extract: extract(meta_model, tokenizer, PAIRS, progress=False), meta_model,
                       "forward")
        assert {"input_ids", "attention_mask"} <= set(given)
        assert_on(given, META)


def test_caa_adds_its_vector_on_the_blocks_device(meta_model, cpu_batch, smollm2):
    vector = activation_vector(meta_model)
    with OneDevicePerOp(), activation_steering(meta_model, vector, layer=1, multiplier=4.0, mode="one_shot"):
        cache = prefill(meta_model, cpu_batch.input_ids, cpu_batch.attention_mask)  # the hook adds in the prefill
    assert_on(tensors_in({"cache": cache}), META, torch.bfloat16)
    elsewhere = torch.zeros(2, 3, meta_model.config.hidden_size, dtype=torch.bfloat16, device=META)
    with OneDevicePerOp():  # a block on another device than the model's first one (device_map="auto")
        _steering_hook("paper", 1, torch.ones(meta_model.config.hidden_size))(None, (), {}, elsewhere)
    given = handed(lambda: caa_generate(meta_model, smollm2[1], PROMPTS, vector, layer=1, multiplier=4.0,
                                        max_new_tokens=2, progress=False), meta_model)
    assert_on(given, META)


def test_scoring_extraction_step_hands_the_model_its_device(meta_model, smollm2):
    tokenizer = smollm2[1]
    given = handed(lambda: score_choices(meta_model, tokenizer, PROMPTS, ["A", "B"], ["A", "B"],
                                         [["A", "B"], ["A", "B"]]), meta_model)
    assert_on(given, META)
    given = handed(lambda: forced_choices(meta_model, tokenizer, PROMPTS, [["A", "B"], ["A", "B"]]),
                   meta_model, "forward")
    assert_on(given, META)


def test_augmentation_moves_the_prompt_to_the_model(meta_model, cpu_batch):
    with OneDevicePerOp():
        cache, embeds, mask = augmented_inputs(meta_model, None, cpu_batch.input_ids, cpu_batch.attention_mask)
    assert_on({"embeds": embeds, "mask": mask, **tensors_in({"cache": cache})}, META, torch.bfloat16)


def test_a_cache_spread_over_devices_is_edited_and_read_layer_by_layer(smollm2, cpu_batch):
    """With ``device_map="auto"`` each layer may live on its own GPU: here layer 0 sits on meta, the others on the
    CPU, and a float32 CPU vector is added to each in its own device and dtype."""
    model = tiny_model().to(torch.bfloat16)
    cache = prefill(model, cpu_batch.input_ids, cpu_batch.attention_mask)
    first = cache.layers[0]
    first.keys, first.values = first.keys.to(META), first.values.to(META)
    before = cache.layers[1].values[:, :, -1].clone()
    vector = kv_vector(model)
    with OneDevicePerOp():
        add_at_position(cache, range(3), vector.keys, 2 * vector.values)
        keys, values = read_position(cache)
    assert [layer.keys.device for layer in cache.layers] == [META, torch.device("cpu"), torch.device("cpu")]
    assert all(layer.values.dtype == torch.bfloat16 for layer in cache.layers)
    assert torch.equal(cache.layers[1].values[:, :, -1], before + 2)
    assert keys.device == values.device == META and keys.shape[0] == 3


# --- bfloat16 on the CPU: the same functions, run for real ----------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_bf16():
    """The embedded SmolLM2 loaded by dtype name, in bfloat16 on the CPU."""
    return load_model("smollm2-135m-instruct", dtype="bfloat16", device="cpu", progress=False)


def test_a_bfloat16_model_steers_with_a_float32_vector(smollm2_bf16):
    model, tokenizer = smollm2_bf16
    assert model.dtype == torch.bfloat16
    vector = extract_steering_vector(model, tokenizer, PAIRS, progress=False)
    assert vector.keys.dtype == torch.float32 and vector.keys.device.type == "cpu"
    batch = encode(tokenizer, [chat_prompt(tokenizer, q) for q in PROMPTS])
    ids, mask = append_offset(tokenizer, batch.input_ids, batch.attention_mask)
    plain = prefill(model, ids[:, :-1], mask[:, :-1])
    steered = steered_cache(model, ids, mask, vector, c_values=4.0)
    assert all(layer.values.dtype == torch.bfloat16 for layer in steered.layers)
    edit = steered.layers[5].values[:, :, -1].float() - plain.layers[5].values[:, :, -1].float()
    assert torch.allclose(edit, (4.0 * vector.values[5]).expand_as(edit), atol=0.1)
    answers = generate(model, tokenizer, [chat_prompt(tokenizer, q) for q in PROMPTS], vector, c_values=4.0,
                       max_new_tokens=3, progress=False)
    assert len(answers) == 2 and all(a.n_tokens >= 1 for a in answers)


def test_a_bfloat16_model_runs_caa_and_scoring(smollm2_bf16):
    model, tokenizer = smollm2_bf16
    vector = extract_activation_vector(model, tokenizer, PAIRS, progress=False)
    answers = caa_generate(model, tokenizer, PROMPTS, vector, layer=5, multiplier=2.0, mode="cached",
                           max_new_tokens=3, progress=False)
    assert len(answers) == 2
    scored = score_choices(model, tokenizer, PROMPTS, ["The answer is A.", "no idea"], ["A", "B"],
                           [["A", "B"], ["A", "B"]])
    assert scored[0].prediction == "A" and scored[1].prediction in {"A", "B"}


# --- dtype and placement when loading ------------------------------------------------------------------------


def test_dtypes_by_name_and_auto():
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype(torch.float16) == torch.float16
    assert resolve_dtype("auto", "cpu") == torch.float32  # the CPU keeps the paper's float32
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8")


def test_a_device_map_is_handed_to_the_loader():
    model, _ = load_model("smollm2-135m-instruct", device_map="auto", progress=False)  # all on the CPU here
    assert model.device.type == "cpu" and model.dtype == torch.float32
    with pytest.raises(ValueError, match="not both"):
        load_model("smollm2-135m-instruct", device="cpu", device_map="auto")
