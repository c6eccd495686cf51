"""The evaluation runner on the real SmolLM2 model, with tiny runs: resumption after an interruption,
the results file, greedy determinism, sampling runs, held-out selection, plug-in methods and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cachesteer_lite import ActivationVector, Completion, SteeringVector, chat_prompt, get_task, load_items
from cachesteer_lite.__main__ import main
from cachesteer_lite.augmentation import TrainConfig, augmented_generate, load_augmenter, train
from cachesteer_lite.runs import methods
from cachesteer_lite.runs.config import EvalConfig
from cachesteer_lite.runs.methods import METHODS, Method, Prepared, vector_key
from cachesteer_lite.runs.runner import evaluate, resolve_config
from cachesteer_lite.runs.selection import apply_point, held_out_items, select_settings

TINY = {"limit": 6, "batch_size": 2, "max_new_tokens": 4}
STEER = {"n_pairs": 4, "n_demonstrations": 1, "c_values": 4.0}


class Interrupted(Exception):
    pass


def _stop_after_first_batch(done: int, total: int) -> None:
    raise Interrupted


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "batch_seconds"} for r in records]


def test_unknown_names_list_the_valid_ones(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    valid = "valid methods: baseline, offset_control, cot, cache_steering, cache_steering_cot"
    with pytest.raises(ValueError, match=re.escape(valid)):
        evaluate(model, tokenizer, EvalConfig("arc_challenge", "steer_harder"), tmp_path)
    with pytest.raises(ValueError, match="valid tasks: gsm8k, arc_challenge, csqa, piqa"):
        evaluate(model, tokenizer, EvalConfig("mmlu", "baseline"), tmp_path)


def test_held_out_items_never_touch_the_evaluation_split() -> None:
    assert held_out_items("arc_challenge", 300) == ("validation", 0)
    for task in ("gsm8k", "csqa", "piqa"):
        split, start = held_out_items(task, 100)
        assert (split, start) == ("train", 100) and split != get_task(task).eval_split


@pytest.mark.slow
def test_resume_skips_finished_items_and_matches_a_fresh_run(smollm2, tmp_path: Path, monkeypatch) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("arc_challenge", "baseline", **TINY)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        evaluate(model, tokenizer, config, interrupted, progress=False, on_batch=_stop_after_first_batch)
    first = _lines(interrupted / "items.jsonl")
    assert len(first) == 2 and not (interrupted / "results.json").exists()

    seen: list[str] = []
    real_generate = methods.generate

    def spy(model_, tokenizer_, prompts, *args, **kwargs):
        seen.extend(prompts)
        return real_generate(model_, tokenizer_, prompts, *args, **kwargs)

    monkeypatch.setattr(methods, "generate", spy)
    result = evaluate(model, tokenizer, config, interrupted, progress=False)
    items = {item.index: item for item in load_items("arc_challenge", limit=6)}
    finished = {chat_prompt(tokenizer, items[r["index"]].question) for r in first}
    assert len(seen) == 4 and not finished & set(seen)

    records = _lines(interrupted / "items.jsonl")
    assert sorted(r["index"] for r in records) == list(range(6)) and records[:2] == first
    monkeypatch.setattr(methods, "generate", real_generate)
    fresh = evaluate(model, tokenizer, config, tmp_path / "fresh", progress=False)
    by_index = lambda rs: sorted(_without_timing(rs), key=lambda r: r["index"])  # noqa: E731
    assert by_index(records) == by_index(_lines(tmp_path / "fresh" / "items.jsonl"))
    assert result["accuracy"] == fresh["accuracy"]

    # A finished run reruns without generating anything, and without rewriting any of its files: its results keep
    # the dates, versions and sessions of the runs that made its records.
    seen.clear()
    monkeypatch.setattr(methods, "generate", spy)
    stored = {path.name: path.read_bytes() for path in interrupted.iterdir()}
    assert evaluate(model, tokenizer, config, interrupted, progress=False) == json.loads(stored["results.json"])
    assert seen == [] and {path.name: path.read_bytes() for path in interrupted.iterdir()} == stored


def test_results_file_fields(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    result = evaluate(model, tokenizer, EvalConfig("piqa", "cot", limit=3, batch_size=3, max_new_tokens=4), tmp_path,
                      progress=False)
    assert json.loads((tmp_path / "results.json").read_text()) == result
    assert (result["task"], result["method"], result["model"], result["split"], result["n"]) == (
        "piqa", "cot", "smollm2-135m-instruct", "validation", 3)
    low, high = result["ci95"]
    assert low <= result["accuracy"] <= high and result["accuracy_sd"] is None
    assert 0 < result["mean_tokens"] <= 4 and result["mean_words"] > 0
    assert result["degenerate"] == 0.0  # four tokens leave no room for a loop
    assert result["config"]["max_new_tokens"] == 4 and result["generation"] == {"do_sample": False, "max_new_tokens": 4}
    assert {"python", "torch", "transformers", "cachesteer-lite"} <= set(result["versions"])
    assert result["hardware"]["cpu_count"] >= 1 and result["hardware"]["device"] == "cpu"
    assert result["wall_time_s"] > 0 and result["runs"][0]["items_file"] == "items.jsonl"
    assert sum(result["runs"][0]["extraction"].values()) == 3
    record = _lines(tmp_path / "items.jsonl")[0]
    assert record["extraction_suffix"].startswith("\nSo the correct choice is")
    assert {"index", "gold", "prediction", "correct", "response", "n_tokens", "n_words"} <= set(record)


def test_other_settings_in_the_same_directory_are_refused(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("gsm8k", "baseline", limit=1, max_new_tokens=2)
    evaluate(model, tokenizer, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(max_new_tokens"):
        evaluate(model, tokenizer, EvalConfig("gsm8k", "baseline", limit=1, max_new_tokens=3), tmp_path)


@pytest.mark.slow  # an end-to-end run, interrupted and resumed (the repair itself: test_records.py)
def test_a_run_killed_mid_write_resumes_into_a_clean_file(smollm2, tmp_path: Path) -> None:
    """Reading is read-only by default, so the runner must ask for the repair: appending after a cut-off last
    line would glue two records into one line and damage the file for good."""
    model, tokenizer = smollm2
    config = EvalConfig("arc_challenge", "baseline", **TINY)
    with pytest.raises(Interrupted):
        evaluate(model, tokenizer, config, tmp_path, progress=False, on_batch=_stop_after_first_batch)
    path = tmp_path / "items.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + '{"index": 5, "resp', encoding="utf-8")  # killed mid-write
    with pytest.warns(UserWarning, match="dropping an incomplete last line"):
        result = evaluate(model, tokenizer, config, tmp_path, progress=False)
    assert sorted(r["index"] for r in _lines(path)) == list(range(6)) and result["n"] == 6


@pytest.mark.slow
def test_cache_steering_greedy_runs_are_deterministic(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("arc_challenge", "cache_steering", limit=2, batch_size=2, max_new_tokens=8, **STEER)
    first = evaluate(model, tokenizer, config, tmp_path / "a", progress=False)
    second = evaluate(model, tokenizer, config, tmp_path / "b", progress=False)  # a fresh memo: vector re-extracted
    records = [_without_timing(_lines(tmp_path / run / "items.jsonl")) for run in ("a", "b")]
    assert records[0] == records[1]
    assert first["accuracy"] == second["accuracy"]
    details = first["method_details"]
    assert details["offset"] == "\n" and details["vector_tokens"] == ["\n"]
    assert details["contrastive"]["n_pairs"] == 4 and details["contrastive"]["selection"] == "nearest"
    stored = SteeringVector.load(tmp_path / "a" / "steering_vector")  # the vector the run steered with
    assert stored.metadata.n_pairs == 4 and stored.metadata.token_texts == ["\n"]
    assert torch.equal(stored.values, SteeringVector.load(tmp_path / "b" / "steering_vector").values)


@pytest.mark.slow
def test_sampling_runs_record_seeds_and_spread(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("gsm8k", "baseline", limit=2, batch_size=2, max_new_tokens=4, do_sample=True, seeds=(1, 2))
    result = evaluate(model, tokenizer, config, tmp_path / "a", progress=False)
    assert [run["seed"] for run in result["runs"]] == [1, 2] and result["ci95"] is None
    assert result["accuracy_sd"] is not None and result["generation"]["temperature"] == 0.6
    again = evaluate(model, tokenizer, config, tmp_path / "b", progress=False)
    for seed in (1, 2):
        name = f"items_seed{seed}.jsonl"
        assert _without_timing(_lines(tmp_path / "a" / name)) == _without_timing(_lines(tmp_path / "b" / name))
    assert again["accuracy"] == result["accuracy"]


@pytest.mark.slow
def test_select_settings_on_held_out_items(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    base = EvalConfig("arc_challenge", "cache_steering", batch_size=2, max_new_tokens=4)
    selection = select_settings(model, tokenizer, base, tmp_path, limit=2, c_values=(0.0, 4.0), n_pairs=(4,),
                                n_demonstrations=(1, 4), progress=False)
    assert selection["held_out"] == {"split": "validation", "start": 0, "limit": 2}
    assert [(row["n_demonstrations"], row["c_values"]) for row in selection["grid"]] == [(1, 0.0), (1, 4.0)]
    assert selection["skipped"] == [{"n_pairs": 4, "n_demonstrations": 4, "c_values": c} for c in (0.0, 4.0)]
    points = [{k: row[k] for k in ("n_pairs", "n_demonstrations", "c_values")} for row in selection["grid"]]
    assert selection["best"] in points
    assert json.loads((tmp_path / "selection.json").read_text()) == selection
    settings = json.loads((tmp_path / "n4_k1_c4" / "run.json").read_text())["settings"]
    assert settings["split"] == "validation" and settings["split"] != get_task("arc_challenge").eval_split


def test_paper_settings_are_the_default_capped_by_the_traces(smollm2) -> None:
    model, _ = smollm2
    with pytest.warns(UserWarning, match="the paper used 300 pairs"):
        config = resolve_config(EvalConfig("arc_challenge", "cache_steering"), model)
    assert (config.n_pairs, config.n_demonstrations, config.c_values, config.split) == (100, 10, 6.0, "test")
    gsm8k = resolve_config(EvalConfig("gsm8k", "cache_steering_cot"), model)
    assert (gsm8k.n_pairs, gsm8k.n_demonstrations, gsm8k.c_values) == (300, 5, 1.0)


def test_a_new_method_plugs_into_the_runner(smollm2, tmp_path: Path, monkeypatch) -> None:
    model, tokenizer = smollm2

    def prepare(model_, tokenizer_, config, memo, progress) -> Prepared:
        return Prepared(lambda prompts, **kwargs: [Completion("So it is 18.", 6)] * len(prompts), "", {"plug": True})

    monkeypatch.setitem(METHODS, "always_18", Method("always_18", "answers 18", False, (), prepare))
    result = evaluate(model, tokenizer, EvalConfig("gsm8k", "always_18", limit=2), tmp_path, progress=False)
    assert result["runs"][0]["n_correct"] == 1 and result["method_details"] == {"plug": True}


def test_cli_runs_and_prints_the_comparison(tmp_path: Path, capsys, monkeypatch) -> None:
    arguments = ["evaluate", "--task", "gsm8k", "--method", "baseline", "--limit", "2", "--max-new-tokens", "3",
                 "--output-dir", str(tmp_path)]
    assert main(arguments) == 0
    printed = capsys.readouterr()
    assert "gsm8k baseline: accuracy" in printed.out and "| gsm8k | baseline | 2 |" in printed.out
    assert "| SmolLM2-360M-Instruct | 1319 | absent |" in printed.out  # the paper's model and n beside ours
    assert "%|" in printed.err  # a progress bar
    assert (tmp_path / "smollm2-135m-instruct" / "gsm8k" / "baseline" / "results.json").is_file()
    assert main([*arguments, "--no-progress"]) == 0 and "%|" not in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(arguments) == 0 and "%|" not in capsys.readouterr().err


# --- activation steering (CAA) through the same runner ------------------------------------------------------

CAA = {"n_pairs": 4, "n_demonstrations": 1}


@pytest.mark.slow
def test_caa_at_multiplier_zero_answers_like_the_baseline(smollm2, tmp_path: Path) -> None:
    """CAA plugs into the runner; with multiplier 0 its records equal the baseline's item for item (the hook adds
    nothing, and scoring is never steered), so any difference at other multipliers comes from the steering."""
    model, tokenizer = smollm2
    caa = EvalConfig("arc_challenge", "caa", limit=3, batch_size=2, max_new_tokens=6, **CAA,
                     options={"layer": 10, "multiplier": 0.0, "mode": "cached"})
    result = evaluate(model, tokenizer, caa, tmp_path / "caa", progress=False)
    evaluate(model, tokenizer, EvalConfig("arc_challenge", "baseline", limit=3, batch_size=2, max_new_tokens=6),
             tmp_path / "baseline", progress=False)
    fields = ("index", "prediction", "response", "n_tokens")
    records = [[{k: r[k] for k in fields} for r in _lines(tmp_path / run / "items.jsonl")]
               for run in ("caa", "baseline")]
    assert sorted(records[0], key=lambda r: r["index"]) == sorted(records[1], key=lambda r: r["index"])
    assert result["method_details"]["layer"] == 10 and result["method_details"]["mode"] == "cached"
    assert result["config"]["options"] == {"layer": 10, "multiplier": 0.0, "mode": "cached"}
    stored = ActivationVector.load(tmp_path / "caa" / "steering_vector")
    assert stored.metadata.n_pairs == 4 and tuple(stored.directions.shape) == (30, 576)


def test_caa_options_default_to_the_paper_and_bad_ones_are_refused(smollm2) -> None:
    model, _ = smollm2
    with pytest.warns(UserWarning, match="the paper used 200 pairs"):
        config = resolve_config(EvalConfig("arc_challenge", "caa"), model)
    assert config.options == {"layer": 14, "multiplier": 3.0, "mode": "paper"}
    assert (config.n_pairs, config.n_demonstrations, config.c_values) == (100, 5, None)
    chosen = resolve_config(EvalConfig("csqa", "caa", **CAA, options={"multiplier": 1.0}), model)
    assert chosen.options == {"layer": 15, "multiplier": 1.0, "mode": "paper"}
    with pytest.raises(ValueError, match="has no option 'strength'; its options: layer, multiplier, mode"):
        resolve_config(EvalConfig("csqa", "caa", **CAA, options={"strength": 1.0}), model)
    with pytest.raises(ValueError, match="unknown mode 'always'"):
        resolve_config(EvalConfig("csqa", "caa", **CAA, options={"mode": "always"}), model)
    with pytest.raises(ValueError, match="method 'baseline' has no option 'layer'; its options: none"):
        resolve_config(EvalConfig("csqa", "baseline", options={"layer": 3}), model)


@pytest.mark.slow
def test_select_caa_layer_and_multiplier_on_held_out_items(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    base = EvalConfig("arc_challenge", "caa", batch_size=2, max_new_tokens=4, options={"mode": "cached"})
    selection = select_settings(model, tokenizer, base, tmp_path, limit=2, n_pairs=(4,), n_demonstrations=(1,),
                                options={"layer": [5, 10], "multiplier": [0.0, 8.0]}, progress=False)
    assert [(row["layer"], row["multiplier"]) for row in selection["grid"]] == [(5, 0.0), (5, 8.0), (10, 0.0),
                                                                               (10, 8.0)]
    assert all("c_values" not in row for row in selection["grid"])
    assert (tmp_path / "n4_k1_layer10_multiplier8" / "items.jsonl").is_file()
    assert selection["held_out"]["split"] == "validation"
    best = apply_point(base, selection["best"])
    assert best.options == {"mode": "cached", "layer": selection["best"]["layer"],
                            "multiplier": selection["best"]["multiplier"]}
    with pytest.raises(ValueError, match="has no option c_keys to select"):
        select_settings(model, tokenizer, base, tmp_path, limit=2, options={"c_keys": [1.0]}, progress=False)


def test_cache_augmentation_runs_from_a_checkpoint(smollm2, tmp_path: Path) -> None:
    """A trained augmenter plugs into the runner by its checkpoint; its answers are those of
    ``augmented_generate``, and the run records which weights it used. Without a checkpoint it fails clearly."""
    model, tokenizer = smollm2
    texts = [item.question for item in load_items("gsm8k", "train", limit=8)]
    train(model, tokenizer, texts, TrainConfig(kind="pause", n_latents=2, n_ahead=2, steps=2, batch_size=2),
          tmp_path / "pause", progress=False)
    config = EvalConfig("gsm8k", "cache_augmentation", limit=3, batch_size=2, max_new_tokens=6,
                        options={"checkpoint": str(tmp_path / "pause")})
    result = evaluate(model, tokenizer, config, tmp_path / "run", progress=False)
    assert result["method_details"]["step"] == 2 and len(result["method_details"]["augmenter_sha256"]) == 64
    records = sorted(_lines(tmp_path / "run" / "items.jsonl"), key=lambda r: r["index"])
    prompts = [chat_prompt(tokenizer, item.question) for item in load_items("gsm8k", "test", limit=3)]
    expected = augmented_generate(model, tokenizer, load_augmenter(model, tmp_path / "pause"), prompts,
                                  max_new_tokens=6, batch_size=2, progress=False)
    assert [r["response"] for r in records] == [c.text for c in expected]
    with pytest.raises(ValueError, match="needs the option\\(s\\) checkpoint"):
        resolve_config(EvalConfig("gsm8k", "cache_augmentation"), model)


@pytest.mark.slow
def test_a_resumed_steering_run_reuses_its_saved_vector(smollm2, tmp_path: Path, monkeypatch) -> None:
    """Resuming a cache-steering run in a new session loads the vector the run saved instead of extracting it
    again (minutes on a CPU), and finishes with the records an uninterrupted run writes. A damaged vector file
    is ignored with a warning and the vector extracted afresh."""
    model, tokenizer = smollm2
    config = EvalConfig("arc_challenge", "cache_steering", limit=4, batch_size=2, max_new_tokens=6, **STEER)
    with pytest.raises(Interrupted):
        evaluate(model, tokenizer, config, tmp_path / "run", progress=False, on_batch=_stop_after_first_batch)
    extractions: list[int] = []
    real_extract = methods.extract_steering_vector

    def counting(*args, **kwargs):
        extractions.append(1)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(methods, "extract_steering_vector", counting)
    evaluate(model, tokenizer, config, tmp_path / "run", progress=False)  # a new session: a fresh memo
    assert extractions == []
    evaluate(model, tokenizer, config, tmp_path / "fresh", progress=False)
    assert extractions == [1]
    by_index = lambda rs: sorted(_without_timing(rs), key=lambda r: r["index"])  # noqa: E731
    assert by_index(_lines(tmp_path / "run" / "items.jsonl")) == by_index(_lines(tmp_path / "fresh" / "items.jsonl"))

    # A session that already extracted a vector for the same settings still steers a resumed run with the run's own
    # saved vector, and leaves its file as it was (before, the session's vector replaced it).
    saved = (tmp_path / "run" / "steering_vector.safetensors").read_bytes()
    own = SteeringVector.load(tmp_path / "run" / "steering_vector")
    other = SteeringVector(torch.randn_like(own.keys), torch.randn_like(own.values), own.metadata)
    memo = {vector_key(SteeringVector, model, resolve_config(config, model)): other}
    records = (tmp_path / "run" / "items.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "run" / "items.jsonl").write_text("".join(records[:2]))  # unfinished again: it has to steer
    evaluate(model, tokenizer, config, tmp_path / "run", memo=memo, progress=False)
    assert (tmp_path / "run" / "steering_vector.safetensors").read_bytes() == saved
    assert torch.equal(next(iter(memo.values())).values, own.values)

    (tmp_path / "fresh" / "steering_vector.safetensors").write_bytes(b"cut off")
    (tmp_path / "fresh" / "items.jsonl").unlink()
    with pytest.warns(UserWarning, match="ignoring the saved vector"):
        evaluate(model, tokenizer, config, tmp_path / "fresh", progress=False)
    assert extractions == [1, 1]


def test_resumed_runs_add_up_their_wall_time_and_count_resumes(smollm2, tmp_path: Path) -> None:
    """Before, a resumed run's results.json counted the last session's wall time only, while its generation time
    covered every session; and a greedy run listed five sampling seeds."""
    model, tokenizer = smollm2
    config = EvalConfig("gsm8k", "baseline", limit=4, batch_size=2, max_new_tokens=3)
    with pytest.raises(Interrupted):
        evaluate(model, tokenizer, config, tmp_path, progress=False, on_batch=_stop_after_first_batch)
    (first,) = json.loads((tmp_path / "run.json").read_text())["sessions"]
    assert (first["records_found"], first["records_added"]) == (0, 2) and first["wall_time_s"] > 0
    result = evaluate(model, tokenizer, config, tmp_path, progress=False)
    sessions = json.loads((tmp_path / "run.json").read_text())["sessions"]
    assert [(s["records_found"], s["records_added"]) for s in sessions] == [(0, 2), (2, 2)]
    assert result["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in sessions), abs=1e-3)
    assert result["wall_time_s"] >= result["generation_seconds"] > 0
    assert (result["sessions"], result["resumes"]) == (2, 1)
    assert result["config"]["seeds"] is None  # greedy: no sampling seeds


def test_a_run_stored_before_sessions_keeps_its_wall_time(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    config = EvalConfig("gsm8k", "baseline", limit=2, batch_size=2, max_new_tokens=3)
    first = evaluate(model, tokenizer, config, tmp_path, progress=False)
    run = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({"settings": run["settings"]}))  # as written before sessions
    results = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**results, "wall_time_s": 12.5}))
    records = (tmp_path / "items.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "items.jsonl").write_text(records[0])  # a record lost: the run has one item left to answer
    again = evaluate(model, tokenizer, config, tmp_path, progress=False)
    assert again["wall_time_s"] >= 12.5 and again["sessions"] == 2 and again["accuracy"] == first["accuracy"]
