"""Checks of the values a user hands the library, each failing with one sentence that says what is allowed.

A coefficient of NaN steers nothing and writes NaN into results; a string fails deep inside torch with a message
about tensor indices. These checks run where a value enters the library, so that a bad value never travels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any


def finite_number(name: str, value: Any) -> float:
    """``value`` as a float, after checking that it is a real, finite number (not a bool, a string or NaN)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def integer(name: str, value: Any, *, at_least: int | None = None) -> int:
    """``value`` as an int, after checking that it is an integer (not a bool) of at least ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name} must be at least {at_least}, got {value}")
    return int(value)


def layer_index(name: str, layer: Any, n_layers: int) -> int:
    """``layer`` as an int, after checking that it is one of the model's layers 0..n_layers-1."""
    if not 0 <= integer(name, layer) < n_layers:
        raise ValueError(f"{name} {layer} does not exist: the model has layers 0..{n_layers - 1}")
    return int(layer)


def layer_indices(name: str, layers: Iterable[Any], n_layers: int) -> list[int]:
    """Sorted, distinct layer indices, each an integer in 0..n_layers-1."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise TypeError(f"{name} must be a collection of layer indices, got {type(layers).__name__} {layers!r}")
    chosen = sorted({integer(f"each of {name}", layer) for layer in layers})
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"{name} {bad} do not exist: the model has layers 0..{n_layers - 1}")
    return chosen
