"""The timing harness (cachesteer_lite.runs.timing) and the latency benchmark script built on it, on the real
embedded model at tiny sizes.

The benchmark is a script, not a package module, so it is imported from its file path. Random vectors of a
fixed seed stand in for extracted ones (extraction from the paper-format contrastive set takes minutes on a
busy CPU, and speed does not depend on the vector): large enough that every steered method visibly changes
the first tokens, so a method whose edit were lost would fail the test.
"""

from __future__ import annotations

import math

import pytest
import torch

from cachesteer_lite import ActivationVector, SteeringVector
from cachesteer_lite.core.caa import ActivationMetadata, activation_fingerprint
from cachesteer_lite.core.vectors import VectorMetadata, model_fingerprint
from cachesteer_lite.runs import timing

from conftest import REPO, script_module

N_PROMPTS, NEW_TOKENS, BATCH_SIZES = 2, 3, (1, 2)


def load_bench():
    return script_module("benchmarks/bench_latency.py")


@pytest.fixture(scope="module")
def bench():
    return load_bench()


def random_vectors(model) -> tuple[SteeringVector, ActivationVector]:
    """A key/value and an activation vector of the model's shapes, with seeded random directions."""
    generator = torch.Generator().manual_seed(0)
    fp = model_fingerprint(model)
    shape = (fp["n_layers"], fp["n_kv_heads"], fp["head_dim"])
    kv = SteeringVector(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator),
                        VectorMetadata(model.name_or_alias, fp, -1, ["\n"], 1))
    afp = activation_fingerprint(model)
    directions = 4 * torch.randn((afp["n_layers"], afp["hidden_size"]), generator=generator)
    return kv, ActivationVector(directions, ActivationMetadata(model.name_or_alias, afp, -1, ["\n"], 1))


@pytest.fixture(scope="module")
def measured(bench, smollm2):
    model, tokenizer = smollm2
    steering, activation = random_vectors(model)
    return timing.measure(model, tokenizer, steering, activation, n_prompts=N_PROMPTS, new_tokens=NEW_TOKENS,
                          repeats=1, batch_sizes=BATCH_SIZES, progress=False)


def test_caa_layer_is_at_the_papers_relative_depth():
    assert timing.caa_layer_for(16) == 7  # the paper's layer on Llama-3.2-1B
    assert timing.caa_layer_for(30) == 13  # SmolLM2-135M
    ratios = timing.paper_ratios()
    assert ratios[16]["caa_paper"] == pytest.approx(14.0, abs=0.05)
    assert ratios[1]["caa_paper"] == pytest.approx(1.57, abs=0.005)


@pytest.mark.slow
def test_measure_counts_real_tokens_and_every_method_steers(measured):
    assert measured["settings"]["caa_layer"] == 13
    assert [r["batch_size"] for r in measured["results"]] == list(BATCH_SIZES)
    assert set(measured["ratios"]) == {str(bs) for bs in BATCH_SIZES}
    for result in measured["results"]:
        assert result["n_prompts"] == N_PROMPTS
        assert result["n_batches"] == math.ceil(N_PROMPTS / result["batch_size"])
        assert set(result["methods"]) == set(timing.METHODS)
        for name, m in result["methods"].items():
            assert m["tokens"] == N_PROMPTS * NEW_TOKENS, name  # rows x new tokens, whatever the padding
            assert len(m["seconds_per_repeat"]) == 1
            assert m["ms_per_token"] > 0 and m["tokens_per_s"] > 0
            assert math.isfinite(m["ratio_to_baseline"]) and m["ratio_to_baseline"] > 0
            assert m["ratio_to_baseline"] == measured["ratios"][str(result["batch_size"])][name]
            if name == "baseline":
                assert m["ratio_to_baseline"] == 1.0 and m["rows_changed_by_steering"] is None
            else:  # compared with the unsteered generation of the same input: the edit really happened
                assert m["rows_changed_by_steering"] > 0, f"{name} at batch {result['batch_size']} did not steer"
    # the two ARC prompts differ in length, so batch 2 is padded; padding is never counted as tokens
    assert measured["results"][1]["prompt_padding_tokens"] > 0


@pytest.mark.slow
def test_table_and_figure(bench, measured, tmp_path, capsys):
    report = {**measured, "config": {"model": "smollm2-135m-instruct", "device": "cpu", "repeats": 1}}
    bench.print_table(report)
    table = capsys.readouterr().out
    assert "CAA one-shot" in table and "1.57" in table  # the paper's ratio at batch 1 beside this run's
    bench.draw_figure(report, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 10_000


def test_readme_quotes_the_stored_benchmark():
    """The README's latency table is typed from data/results/benchmarks/latency_cpu.json: it must match it."""
    import json

    stored = json.loads((REPO / "data" / "results" / "benchmarks" / "latency_cpu.json").read_text())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for result in stored["results"]:
        for name, method in result["methods"].items():
            ms = method["ms_per_token"]
            quoted = f"{ms:.1f}" if result["batch_size"] == 1 else f"{ms:.2f}"
            if name != "baseline":
                quoted += f" ({method['ratio_to_baseline']:.2f}x)"
            assert quoted in readme, f"README lacks {quoted!r} for {name} at batch {result['batch_size']}"


def test_stored_paths_name_no_machine(bench, tmp_path):
    assert bench.portable(bench.REPO / "data" / "results" / "x.json") == "data/results/x.json"
    assert bench.portable(tmp_path / "x.json") == str(tmp_path.resolve() / "x.json")  # outside: kept whole


def test_interleaved_alternates_after_one_warm_up():
    calls: list[str] = []
    seconds = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"] and set(seconds) == {"a", "b"}
    assert all(value >= 0 for value in seconds.values())


def test_batches_carry_the_offset_token_and_keep_dataset_order(smollm2):
    _, tokenizer = smollm2
    prompts = ["short", "a much longer prompt than the first one", "mid length prompt"]
    batches = timing.make_batches(tokenizer, prompts, 2, torch.device("cpu"))
    assert [b.ids.shape[0] for b in batches] == [2, 1]
    newline = tokenizer("\n", add_special_tokens=False).input_ids[0]
    for batch in batches:
        assert torch.equal(batch.offset_ids[:, :-1], batch.ids) and bool((batch.offset_ids[:, -1] == newline).all())
        assert bool(batch.offset_mask[:, -1].all())
