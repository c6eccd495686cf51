"""The paper's numbers: its settings (the defaults of every run) and its results (``data/paper_results.json``).

The JSON transcribes paper-reference section 7: greedy accuracy and mean response words per model, task and
method, and the five-seed sampling means and standard deviations. Absent results are ``null`` with a ``status``
saying why (file not available, no such run, or files that contradict the config).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from ..files import book_file

PAPER_SEEDS: tuple[int, ...] = (1234, 1235, 1237, 1240, 1244)  # the paper's five sampling runs
PAPER_MAX_NEW_TOKENS = 768
# Sampling settings when the checkpoint's generation config does not sample (the paper's get_gen_kwargs).
PAPER_SAMPLING: dict[str, float | int] = {"temperature": 0.6, "top_p": 0.9, "top_k": 50}
# The paper's best settings for SmolLM2-360M-Instruct (best_args.yaml; paper-reference section 3.1), used
# when a steering run is given none. GSM8K's come from the gsm8k-oai rows.
PAPER_SETTINGS: dict[tuple[str, str], dict[str, float | int]] = {
    ("gsm8k", "cache_steering"): {"n_demonstrations": 5, "n_pairs": 200, "c_values": 1.0},
    ("gsm8k", "cache_steering_cot"): {"n_demonstrations": 5, "n_pairs": 300, "c_values": 1.0},
    ("arc_challenge", "cache_steering"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 6.0},
    ("arc_challenge", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 4.0},
    ("csqa", "cache_steering"): {"n_demonstrations": 12, "n_pairs": 400, "c_values": 6.0},
    ("csqa", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 300, "c_values": 6.0},
    ("piqa", "cache_steering"): {"n_demonstrations": 10, "n_pairs": 200, "c_values": 6.0},
    ("piqa", "cache_steering_cot"): {"n_demonstrations": 10, "n_pairs": 200, "c_values": 10.0},
    # Activation steering (paper-reference section 4.1): 5 demonstrations and 200 pairs for every task.
    **{(task, "caa"): {"n_demonstrations": 5, "n_pairs": 200} for task in ("gsm8k", "arc_challenge", "csqa", "piqa")},
}
# CAA's (layer, multiplier) for SmolLM2-360M; PIQA's and GSM8K's from its job file, their results absent.
PAPER_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("arc_challenge", "caa"): {"layer": 14, "multiplier": 3.0, "mode": "paper"},
    ("csqa", "caa"): {"layer": 15, "multiplier": 3.0, "mode": "paper"},
    ("piqa", "caa"): {"layer": 17, "multiplier": 3.0, "mode": "paper"},
    ("gsm8k", "caa"): {"layer": 16, "multiplier": 3.0, "mode": "paper"},
}
# Our method names -> the paper's (the paper calls CAA "activation steering").
PAPER_METHODS: dict[str, str] = {
    "baseline": "baseline",
    "cot": "cot",
    "cache_steering": "cache_steering",
    "cache_steering_cot": "cache_steering_cot",
    "caa": "activation_steering",
}
# Lower-case name fragments -> the paper model of that family (the nearest size the paper ran).
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("smollm2", "SmolLM2-360M-Instruct"),
    ("qwen2", "Qwen2-0.5B-Instruct"),
    ("llama-3.2-1b", "Llama-3.2-1B-Instruct"),
    ("llama-3.2-3b", "Llama-3.2-3B-Instruct"),
    ("llama-3.1-8b", "Llama-3.1-8B-Instruct"),
    ("phi-4-mini", "Phi-4-mini-instruct"),
)


@lru_cache(maxsize=1)
def load_paper_results() -> dict[str, Any]:
    """The parsed reference file ``data/paper_results.json``."""
    return json.loads(book_file("data/paper_results.json").read_text(encoding="utf-8"))


def paper_model_for(model: str) -> str | None:
    """The paper model of the same family as ``model`` (SmolLM2-135M -> SmolLM2-360M-Instruct), or None."""
    name = model.lower()
    return next((paper for fragment, paper in _FAMILIES if fragment in name), None)


def paper_entry(task: str, method: str, paper_model: str, sampling: bool = False) -> dict[str, Any] | None:
    """The paper's row for (model, task, method) from the greedy or the sampling table, or None when the
    table has no such row (for example a method the paper did not run)."""
    paper_method = PAPER_METHODS.get(method)
    table = load_paper_results()["sampling" if sampling else "greedy"]
    return next((row for row in table
                 if (row["model"], row["task"], row["method"]) == (paper_model, task, paper_method)), None)
