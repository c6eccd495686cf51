"""Coprocessor checkpoints are checked like vector files: their state, and their tensors against the checksum the
state records (safetensors keeps none of its own)."""

from __future__ import annotations

import json

import pytest

from cachesteer_lite.augmentation.training import TrainConfig, latest_checkpoint, load_augmenter, train
from cachesteer_lite.core.vector_files import VectorFileError

from conftest import tiny_model

TEXTS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
         "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?"]


@pytest.fixture()
def run(smollm2, tmp_path):
    """A one-step pause-token run on a tiny random model, and that model."""
    _, tokenizer = smollm2
    model = tiny_model()
    train(model, tokenizer, TEXTS, TrainConfig(kind="pause", n_latents=1, n_ahead=2, steps=1, batch_size=1,
                                                max_tokens=24), tmp_path, progress=False)
    return model, latest_checkpoint(tmp_path)


def test_a_checkpoint_records_and_verifies_its_checksum(run):
    model, checkpoint = run
    assert len(json.loads((checkpoint / "state.json").read_text())["augmenter_sha256"]) == 64
    assert load_augmenter(model, checkpoint).n_latents == 1
    tensors = checkpoint / "augmenter.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-4:] = bytes(4)
    tensors.write_bytes(bytes(data))
    with pytest.raises(VectorFileError, match="augmenter.safetensors: sha256 .* differs"):
        load_augmenter(model, checkpoint)


@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("fingerprint"), r"missing or mistyped fingerprint \(dict\)"),
    (lambda state: state.update(step="one"), r"missing or mistyped step \(int\)"),
    (lambda state: state["config"].update(kind="prefix"), "training configuration is invalid .*unknown kind"),
])
def test_a_damaged_state_is_named(run, change, message):
    model, checkpoint = run
    state = json.loads((checkpoint / "state.json").read_text())
    change(state)
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(VectorFileError, match=message):
        load_augmenter(model, checkpoint)


def test_a_checkpoint_written_before_checksums_loads_with_a_warning(run):
    model, checkpoint = run
    state = json.loads((checkpoint / "state.json").read_text())
    del state["augmenter_sha256"]
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.warns(UserWarning, match="records no checksum"):
        load_augmenter(model, checkpoint)
