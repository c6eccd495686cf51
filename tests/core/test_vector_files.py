"""Vector files are checked completely on load and on use: a damaged, inconsistent or foreign file fails with a
sentence that names the file, what was expected and what was found, never with an error from deep inside torch.

Small vectors of a tiny random Llama (3 layers, 2 KV heads, head size 16) keep these checks fast.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cachesteer_lite import ActivationVector, IncompatibleVectorError, SteeringVector, model_fingerprint
from cachesteer_lite.core.caa import ActivationMetadata, activation_fingerprint
from cachesteer_lite.core.vector_files import CHECKSUM_FIELD, VectorFileError, file_sha256
from cachesteer_lite.core.vectors import VectorMetadata

from conftest import tiny_model

SHAPE = (3, 2, 16)  # the tiny model's layers, KV heads and head size


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def steering_vector(model, seed: int = 0) -> SteeringVector:
    generator = torch.Generator().manual_seed(seed)
    meta = VectorMetadata("tiny", model_fingerprint(model), -1, ["\n"], 2)
    return SteeringVector(torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator), meta)


def rewrite(meta_path: Path, tensors: dict[str, torch.Tensor], **changes) -> None:
    """Replace a saved vector's tensors, recording their checksum as a writer would (so that only the check under
    test can fail), and change metadata fields."""
    tensors_path = meta_path.with_suffix(".safetensors")
    save_file(tensors, tensors_path)
    fields = json.loads(meta_path.read_text())
    fields.update(changes)
    fields[CHECKSUM_FIELD] = file_sha256(tensors_path)
    meta_path.write_text(json.dumps(fields))


def test_round_trip_records_and_verifies_a_checksum(tiny, tmp_path):
    vector = steering_vector(tiny)
    tensors_path, meta_path = vector.save(tmp_path / "v")
    assert json.loads(meta_path.read_text())[CHECKSUM_FIELD] == file_sha256(tensors_path)
    loaded = SteeringVector.load(tmp_path / "v")
    assert torch.equal(loaded.keys, vector.keys) and loaded.metadata == vector.metadata


@pytest.mark.parametrize("shape", [(3, 1, 16), (2, 2, 16), (3, 2, 8)], ids=["one KV head", "a layer short",
                                                                           "half the head size"])
def test_tensors_of_another_shape_than_the_metadata_are_refused(tiny, tmp_path, shape):
    """Before: (3, 1, 16) was broadcast over the heads, (2, 2, 16) left a layer unsteered, (3, 2, 8) failed deep
    in the cache edit. Now each fails on load, naming both shapes."""
    _, meta_path = steering_vector(tiny).save(tmp_path / "v")
    rewrite(meta_path, {"keys": torch.zeros(shape), "values": torch.zeros(shape)})
    expected = rf"v.json: the keys .* have shape {re.escape(str(shape))}.*gives \(3, 2, 16\)"
    with pytest.raises(VectorFileError, match=expected):
        SteeringVector.load(meta_path)
    with pytest.raises(ValueError, match="fingerprint gives"):  # built in memory, the same check
        SteeringVector(torch.zeros(shape), torch.zeros(shape), steering_vector(tiny).metadata)


def test_a_vector_of_another_model_is_refused_on_use(tiny):
    other = tiny_model(num_hidden_layers=4)
    with pytest.raises(IncompatibleVectorError, match=r"n_layers.*3.*n_layers.*4"):
        steering_vector(tiny).check_compatible(other)


def test_zeroed_bytes_fail_the_checksum(tiny, tmp_path):
    tensors_path, _ = steering_vector(tiny).save(tmp_path / "v")
    data = bytearray(tensors_path.read_bytes())
    data[-16:] = bytes(16)  # safetensors alone would load this, with other values
    tensors_path.write_bytes(bytes(data))
    with pytest.raises(VectorFileError, match=r"v.safetensors: sha256 .* differs .* changed or damaged"):
        SteeringVector.load(tensors_path)


@pytest.mark.parametrize("damage, message", [
    ({"drop": ["token_offset", "n_pairs"]}, r"lacks \['token_offset', 'n_pairs'\]"),
    ({"set": {"n_pairs": "many"}}, r"'n_pairs' must be a JSON int, found str"),
    ({"set": {"n_pairs": True}}, r"'n_pairs' must be a JSON int, found bool"),
    ({"set": {"colour": "red"}}, r"unexpected \['colour'\]"),
    ({"set": {"fingerprint": {"n_layers": 3}}}, r"fingerprint needs positive integers"),
])
def test_damaged_metadata_is_named(tiny, tmp_path, damage, message):
    _, meta_path = steering_vector(tiny).save(tmp_path / "v")
    fields = json.loads(meta_path.read_text())
    for name in damage.get("drop", []):
        del fields[name]
    fields.update(damage.get("set", {}))
    meta_path.write_text(json.dumps(fields))
    with pytest.raises(VectorFileError, match=message):
        SteeringVector.load(meta_path)


def test_unreadable_tensors_and_metadata_are_named(tiny, tmp_path):
    tensors_path, meta_path = steering_vector(tiny).save(tmp_path / "v")
    meta_path.write_text('{"model_id": ')
    with pytest.raises(VectorFileError, match="v.json: not valid JSON"):
        SteeringVector.load(meta_path)
    steering_vector(tiny).save(tmp_path / "v")
    rewrite(meta_path, {"keys": torch.zeros(SHAPE, dtype=torch.float64), "values": torch.zeros(SHAPE)})
    with pytest.raises(VectorFileError, match="'keys' must be float32, found torch.float64"):
        SteeringVector.load(meta_path)
    rewrite(meta_path, {"keys": torch.full(SHAPE, float("nan")), "values": torch.zeros(SHAPE)})
    with pytest.raises(VectorFileError, match="'keys' holds NaN or infinite values"):
        SteeringVector.load(meta_path)
    rewrite(meta_path, {"directions": torch.zeros(3, 64)})
    with pytest.raises(VectorFileError, match=r"expected the tensors \['keys', 'values'\]"):
        SteeringVector.load(meta_path)
    tensors_path.write_bytes(b"not a safetensors file at all")
    rewrite_checksum = json.loads(meta_path.read_text())
    rewrite_checksum[CHECKSUM_FIELD] = file_sha256(tensors_path)
    meta_path.write_text(json.dumps(rewrite_checksum))
    with pytest.raises(VectorFileError, match="not a readable safetensors file"):
        SteeringVector.load(meta_path)


def test_a_file_written_before_checksums_loads_with_a_warning(tiny, tmp_path):
    vector = steering_vector(tiny)
    _, meta_path = vector.save(tmp_path / "v")
    fields = json.loads(meta_path.read_text())
    del fields[CHECKSUM_FIELD]
    meta_path.write_text(json.dumps(fields))
    with pytest.warns(UserWarning, match="records no checksum"):
        assert torch.equal(SteeringVector.load(meta_path).values, vector.values)


def test_activation_vectors_are_checked_the_same_way(tiny, tmp_path):
    fingerprint = activation_fingerprint(tiny)
    vector = ActivationVector(torch.randn(3, 64), ActivationMetadata("tiny", fingerprint, -1, ["\n"], 2))
    _, meta_path = vector.save(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(ActivationVector.load(meta_path).directions, vector.directions)
    rewrite(meta_path, {"directions": torch.zeros(3, 32)})
    with pytest.raises(VectorFileError, match=r"directions of an activation vector have shape \(3, 32\)"):
        ActivationVector.load(meta_path)
    _, kv_meta = steering_vector(tiny).save(tmp_path / "kv")
    with pytest.raises(VectorFileError, match=r"is not an activation vector \(kind None"):
        ActivationVector.load(kv_meta)
    with pytest.raises(IncompatibleVectorError, match="hidden_size"):
        vector.check_compatible(tiny_model(hidden_size=32, head_dim=8))
