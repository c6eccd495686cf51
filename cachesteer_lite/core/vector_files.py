"""Vector files: the tensors as safetensors, the metadata as JSON, both checked completely when read.

A vector is two files, ``<stem>.safetensors`` and ``<stem>.json`` (never pickle). The JSON holds the metadata and
the sha256 of the safetensors file, since safetensors keeps no checksum of its own: a file whose last bytes were
zeroed would otherwise load, silently, with other values. Reading checks that both files are there, that the JSON
is an object with every field of its metadata class and the right types, that the checksum matches, and that the
tensors are exactly the expected ones, float32 and finite. Every failure names the file, what was expected and
what was found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import MISSING, asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CHECKSUM_FIELD = "tensors_sha256"
# The JSON type of every metadata field, by name (bool is refused where an int is expected).
FIELD_TYPES: dict[str, type] = {"model_id": str, "fingerprint": dict, "token_offset": int, "token_texts": list,
                                "n_pairs": int, "created": str, "notes": dict, "kind": str}
Metadata = TypeVar("Metadata")


class VectorFileError(ValueError):
    """A vector file is damaged, incomplete, or not a vector of the kind asked for; the message says which file,
    what was expected and what was found."""


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stem(path: str | Path) -> Path:
    """The common stem of a vector's two files, whichever of the three names is given."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def write_vector_files(path: str | Path, tensors: dict[str, torch.Tensor], metadata: Any) -> tuple[Path, Path]:
    """Write ``tensors`` to ``<path>.safetensors`` and the dataclass ``metadata``, with the tensors' checksum, to
    ``<path>.json``; return both paths."""
    base = stem(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors_path, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, tensors_path)
    fields = {**asdict(metadata), CHECKSUM_FIELD: file_sha256(tensors_path)}
    meta_path.write_text(json.dumps(fields, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return tensors_path, meta_path


def metadata_from_json(cls: type[Metadata], fields: Any, source: Path) -> Metadata:
    """An instance of the metadata dataclass ``cls`` from parsed JSON, after checking its fields and their types."""
    if not isinstance(fields, dict):
        raise VectorFileError(f"{source}: expected a JSON object of metadata, found {type(fields).__name__}")
    known = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    required = [name for name, field in known.items() if field.default is MISSING and field.default_factory is MISSING]
    missing = [name for name in required if name not in fields]
    unexpected = sorted(set(fields) - set(known))
    if missing or unexpected:
        raise VectorFileError(f"{source}: the metadata lacks {missing or 'nothing'} and has unexpected "
                              f"{unexpected or 'nothing'}; expected the fields {list(known)}")
    for name, value in fields.items():
        expected = FIELD_TYPES.get(name)
        if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            raise VectorFileError(f"{source}: metadata field {name!r} must be a JSON {expected.__name__}, "
                                  f"found {type(value).__name__} {value!r}")
    return cls(**fields)


def read_vector_files(path: str | Path, what: str, names: tuple[str, ...], metadata_type: type[Metadata],
                      kind: str | None = None) -> tuple[dict[str, torch.Tensor], Metadata]:
    """The tensors called ``names`` and the metadata written by :func:`write_vector_files`, all checked (see the
    module docstring); with ``kind``, the metadata's ``kind`` must be it. A file written before checksums were
    recorded loads with a warning."""
    base = stem(path)
    tensors_path, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    for required in (tensors_path, meta_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required} not found: {what} is a .safetensors + .json pair")
    try:
        fields = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VectorFileError(f"{meta_path}: not valid JSON ({error}); {what}'s metadata is damaged") from None
    recorded = fields.pop(CHECKSUM_FIELD, None) if isinstance(fields, dict) else None
    if kind is not None and (not isinstance(fields, dict) or fields.get("kind") != kind):
        found_kind = fields.get("kind") if isinstance(fields, dict) else None
        raise VectorFileError(f"{meta_path} is not {what} (kind {found_kind!r}, expected {kind!r}); key/value "
                              "vectors load with SteeringVector.load, activation vectors with ActivationVector.load")
    metadata = metadata_from_json(metadata_type, fields, meta_path)
    found = file_sha256(tensors_path)
    if recorded is None:
        warnings.warn(f"{meta_path} records no checksum (written before they were): the tensors cannot be verified",
                      stacklevel=3)
    elif recorded != found:
        raise VectorFileError(f"{tensors_path}: sha256 {found} differs from the {recorded} recorded in "
                              f"{meta_path.name}: the file was changed or damaged after it was written")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise VectorFileError(f"{tensors_path}: not a readable safetensors file ({error})") from None
    if sorted(tensors) != sorted(names):
        raise VectorFileError(f"{tensors_path}: expected the tensors {list(names)} of {what}, found {sorted(tensors)}")
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float32:
            raise VectorFileError(f"{tensors_path}: tensor {name!r} must be float32, found {tensor.dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise VectorFileError(f"{tensors_path}: tensor {name!r} holds NaN or infinite values")
    return tensors, metadata


def check_finite_shape(what: str, name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    """Raise ValueError unless ``tensor`` is a float tensor of shape ``expected`` with finite values."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise ValueError(f"the {name} of {what} must be a float tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != expected:
        raise ValueError(f"the {name} of {what} have shape {tuple(tensor.shape)}, but its metadata's fingerprint "
                         f"gives {expected}")
    if tensor.numel() and not math.isfinite(float(tensor.abs().max())):
        raise ValueError(f"the {name} of {what} hold NaN or infinite values")
