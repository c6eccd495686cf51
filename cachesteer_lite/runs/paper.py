"""The paper's numbers: its settings (the defaults of every run) and its results (``data/paper_results.json``).

The JSON transcribes paper-reference section 7: greedy accuracy and mean response words per model, task and
method, and the five-seed sampling means and standard deviations; and section 3.2, the ablation. Absent results are
``null`` with a ``status`` saying why (file not available, no such run, or files that contradict the config).
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
# The paper's best cache-steering settings per model and task (jobs/configs/best_args.yaml; paper-reference
# section 3.1): (demonstrations, pairs, c_keys, c_values) for cache steering alone, and the overrides of the
# "prefix" variant that cache_steering_cot uses. Every entry of the file extracts from the GPT-4o traces
# (gsm8k-oai for GSM8K), at max_new_tokens 768.
BEST_ARGS: dict[tuple[str, str], tuple[tuple[int, int, float, float], dict[str, float | int]]] = {
    ("SmolLM2-360M-Instruct", "gsm8k"): ((5, 200, 0.0, 1.0), {"n_pairs": 300}),
    ("Llama-3.2-1B-Instruct", "gsm8k"): ((5, 100, 0.0, 1.0), {"n_pairs": 200}),
    ("Llama-3.2-3B-Instruct", "gsm8k"): ((5, 100, 0.0, 1.0), {"n_pairs": 200}),
    ("Qwen2-0.5B-Instruct", "gsm8k"): ((5, 100, 0.0, 3.0), {"n_pairs": 200, "c_values": 1.0}),
    ("Llama-3.1-8B-Instruct", "gsm8k"): ((5, 100, 0.0, 2.0), {"n_pairs": 200}),
    ("Phi-4-mini-instruct", "gsm8k"): ((5, 100, 0.0, 1.0), {"n_pairs": 200}),
    ("Llama-3.2-1B-Instruct", "csqa"): ((5, 100, 0.0, 10.0), {}),
    ("Llama-3.2-3B-Instruct", "csqa"): ((10, 300, 0.0, 4.0), {"n_pairs": 400, "n_demonstrations": 10, "c_values": 6.0}),
    ("SmolLM2-360M-Instruct", "csqa"): ((12, 400, 0.0, 6.0), {"n_demonstrations": 10, "n_pairs": 300}),
    ("Qwen2-0.5B-Instruct", "csqa"): ((10, 200, 0.2, 4.0), {}),
    ("Llama-3.1-8B-Instruct", "csqa"): ((5, 100, 0.0, 10.0), {}),
    ("Phi-4-mini-instruct", "csqa"): ((5, 100, 0.0, 10.0), {}),
    ("Llama-3.2-3B-Instruct", "arc_challenge"): ((10, 400, 0.0, 6.0), {"n_pairs": 200}),
    ("Llama-3.2-1B-Instruct", "arc_challenge"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
    ("SmolLM2-360M-Instruct", "arc_challenge"): ((10, 300, 0.0, 6.0), {"c_values": 4.0}),
    ("Qwen2-0.5B-Instruct", "arc_challenge"): ((10, 400, 0.0, 10.0), {"c_values": 8.0, "n_pairs": 200}),
    ("Llama-3.1-8B-Instruct", "arc_challenge"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
    ("Phi-4-mini-instruct", "arc_challenge"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
    ("Llama-3.2-1B-Instruct", "piqa"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
    ("Llama-3.2-3B-Instruct", "piqa"): ((10, 200, 0.0, 10.0), {"n_pairs": 300, "c_values": 6.0}),
    ("SmolLM2-360M-Instruct", "piqa"): ((10, 200, 0.0, 6.0), {"c_values": 10.0}),
    ("Qwen2-0.5B-Instruct", "piqa"): ((10, 200, 0.0, 8.0), {"c_values": 10.0}),
    ("Llama-3.1-8B-Instruct", "piqa"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
    ("Phi-4-mini-instruct", "piqa"): ((10, 200, 0.0, 6.0), {"c_values": 8.0}),
}
# The hub ids of the paper's models (the Llama ones are gated: accept Meta's licence and log in first).
PAPER_HUB_IDS: dict[str, str] = {
    "SmolLM2-360M-Instruct": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "Qwen2-0.5B-Instruct": "Qwen/Qwen2-0.5B-Instruct",
    "Llama-3.2-1B-Instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "Llama-3.2-3B-Instruct": "meta-llama/Llama-3.2-3B-Instruct",
    "Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "Phi-4-mini-instruct": "microsoft/Phi-4-mini-instruct",
}


def best_settings(paper_model: str, task: str, method: str) -> dict[str, float | int]:
    """The paper's best cache-steering settings of ``paper_model`` on ``task`` for ``method`` (cache_steering or
    cache_steering_cot); empty for other methods."""
    if method not in ("cache_steering", "cache_steering_cot"):
        return {}
    if (paper_model, task) not in BEST_ARGS:
        raise ValueError(f"the paper gives no settings for {paper_model} on {task}; its models: "
                         f"{', '.join(PAPER_HUB_IDS)}")
    (n_demonstrations, n_pairs, c_keys, c_values), prefix = BEST_ARGS[(paper_model, task)]
    settings: dict[str, float | int] = {"n_demonstrations": n_demonstrations, "n_pairs": n_pairs,
                                        "c_keys": c_keys, "c_values": c_values}
    return settings | (prefix if method == "cache_steering_cot" else {})


# The paper's best settings for SmolLM2-360M-Instruct, used when a steering run is given none.
PAPER_SETTINGS: dict[tuple[str, str], dict[str, float | int]] = {
    **{(task, method): {k: v for k, v in best_settings("SmolLM2-360M-Instruct", task, method).items() if k != "c_keys"}
       for task in ("gsm8k", "arc_challenge", "csqa", "piqa") for method in ("cache_steering", "cache_steering_cot")},
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


def paper_ablation() -> dict[str, dict[float, float]]:
    """The paper's ablation of cache steering, by setting: accuracy in % at each value, one setting varied at a time
    around its base point. It is Llama-3.2-1B-Instruct on ARC-Challenge's test set (the entry ``ablation`` of the
    reference file says so), the only model and task the paper ablates."""
    accuracy = load_paper_results()["ablation"]["accuracy"]
    return {setting: {float(value): score for value, score in values.items()} for setting, values in accuracy.items()}


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
