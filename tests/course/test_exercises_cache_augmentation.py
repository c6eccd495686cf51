"""Notebook 8's checkers accept the reference solutions and reject the usual wrong answers with a hint."""

from __future__ import annotations

import pytest

from cachesteer_lite.augmentation import (
    AheadPerplexity,
    Coprocessor,
    PauseTokens,
    TrainConfig,
    perplexity_by_ahead_position,
    train,
    training_texts,
)
from cachesteer_lite.augmentation.training import TrainResult
from cachesteer_lite.course import cache_augmentation as nb08
from cachesteer_lite.course.feedback import Feedback
from cachesteer_lite.runs.records import read_json, read_records, write_json, write_records
from cachesteer_lite.runs.results import stored_results_dir
from cachesteer_lite.runs.runner import summarise
from cachesteer_lite.runs.statistics import wilson_interval

SETTINGS = dict(n_latents=2, n_ahead=2, steps=1, batch_size=2, save_every=1)  # one step: the objects, not learning
OPTIONS = dict(n_ahead=2, positions_per_text=2, max_tokens=48, progress=False)


@pytest.fixture(scope="module")
def texts():
    split = training_texts()
    return [d.text for d in split.train][:50], [d.text for d in split.held_out][:4]


def trained_pair(model, tokenizer, train_texts, folder, **overrides):
    return {kind: train(model, tokenizer, train_texts, TrainConfig(kind=kind, **{**SETTINGS, **overrides}),
                        folder / kind, progress=False) for kind in ("coprocessor", "pause")}


def test_pause_budget(smollm2):
    model = smollm2[0]
    coprocessor = Coprocessor(model, 4)  # the notebook's live N_L
    verdict = nb08.check_pause_budget(16 * 576, model, coprocessor)
    assert verdict.correct and "2,442,240 adapter weights" in verdict.message and "266 times" in verdict.message
    assert nb08.check_pause_budget(9216.0, model).correct
    assert "N_L = 4" in nb08.check_pause_budget(4 * 576, model, coprocessor).message
    assert "coprocessor's count" in nb08.check_pause_budget(coprocessor.n_trainable, model, coprocessor).message
    assert "one pause token" in nb08.check_pause_budget(576, model, coprocessor).message
    assert "not one number" in nb08.check_pause_budget(16, model, coprocessor).message


def test_one_ahead(smollm2, texts, tmp_path):
    model, tokenizer = smollm2
    train_texts, held_out = texts
    trained = trained_pair(model, tokenizer, train_texts, tmp_path / "ahead2")
    short = trained_pair(model, tokenizer, train_texts, tmp_path / "ahead1", n_ahead=1)
    one = dict(OPTIONS, n_ahead=1)
    reference = {"plain model": perplexity_by_ahead_position(model, tokenizer, held_out, None, **one),
                 **{kind: perplexity_by_ahead_position(model, tokenizer, held_out, result.augmenter, **one)
                    for kind, result in short.items()}}
    n = reference["plain model"].n_samples
    live = {name: AheadPerplexity([3.0, 2.5], n, [2.75] * n) for name in ("plain model", "coprocessor", "pause")}
    live["coprocessor"] = AheadPerplexity([3.5, 2.5], n, [3.0] * n)  # the notebook's N_A = 2 scores

    def check(answer, **kwargs):
        return nb08.check_one_ahead(answer, model, tokenizer, held_out, OPTIONS, trained, **kwargs)

    verdict = check(reference, live=live)
    assert verdict.correct and "coprocessor minus pause" in verdict.message
    assert "(at n_ahead=2: +0.250 nats)" in verdict.message
    assert "n_ahead=1" in check(live).message  # scored at two ahead positions
    old = {**reference, "coprocessor": perplexity_by_ahead_position(model, tokenizer, held_out,
                                                                    trained["coprocessor"].augmenter, **one)}
    assert "trained with n_ahead=2" in check(old).message
    fewer = {name: AheadPerplexity([2.0], n - 2, [2.0] * (n - 2)) for name in reference}
    assert f"gives {n} samples" in check(fewer).message
    other = {**reference, "plain model": AheadPerplexity([2.0], n, [2.0] * n)}
    assert "plain model's scores" in check(other).message
    assert "keys" in check({"plain model": reference["plain model"]}).message


def test_full_finetune(smollm2):
    model = smollm2[0]
    full = Coprocessor(model, 4, lora_rank=None)
    assert full.n_trainable == nb08.full_copy_trainable(model, 4)
    lora = TrainResult(Coprocessor(model, 4), [3.0] * 5)
    verdict = nb08.check_full_finetune(TrainResult(full, [2.0] * 5), model, 4, 5, lora=lora)
    assert verdict.correct and "a full copy trains 106,205,761 values, 43 times" in verdict.message
    assert nb08.check_full_finetune(full, model, 4, 5).correct  # the augmenter alone
    assert "LoRA adapters" in nb08.check_full_finetune(lora, model, 4, 5).message
    assert "pause-token control" in nb08.check_full_finetune(TrainResult(PauseTokens(model, 4), [1.0] * 5),
                                                             model, 4, 5).message
    assert "N_L = 4" in nb08.check_full_finetune(TrainResult(Coprocessor(model, 2, lora_rank=None), [1.0] * 5),
                                                 model, 4, 5).message
    assert "trained 3 steps" in nb08.check_full_finetune(TrainResult(full, [1.0] * 3), model, 4, 5).message


def fake_run(folder, *, method="cache_augmentation", limit=50, checkpoint_sha=None, flip=(0, 1, 2)):
    """A finished run folder like the runner's: the stored baseline's first ``limit`` records, a few flipped."""
    baseline_dir = stored_results_dir() / "smollm2-135m-instruct" / "arc_challenge" / "baseline"
    baseline = read_json(baseline_dir / "results.json")
    records = [dict(r) for r in read_records(baseline_dir / "items.jsonl").values()][:limit]
    for i in flip:
        records[i]["correct"] = not records[i]["correct"]
    folder.mkdir(parents=True)
    write_records(folder / "items.jsonl", records)
    summary = {"seed": None, "items_file": "items.jsonl", **summarise(records)}
    sha = checkpoint_sha or nb08.sha256(nb08.book_file(f"{nb08.STORED_COPROCESSOR}/augmenter.safetensors"))
    write_json(folder / "results.json", {
        **baseline, "method": method, "n": limit, "accuracy": summary["accuracy"],
        "ci95": list(wilson_interval(summary["n_correct"], limit)), "runs": [summary],
        "config": {**baseline["config"], "method": method, "limit": limit,
                   "options": {"checkpoint": "data/results/smollm2-135m-instruct/cache_augmentation/runs/"
                                             "coprocessor_n16"}},
        "method_details": {"augmenter_sha256": sha, "step": 200}})
    return folder


def test_runner_run(tmp_path):
    folder = fake_run(tmp_path / "run")
    verdict = nb08.check_runner_run(folder)
    assert verdict.correct and "of 50 right with one augmentation" in verdict.message and "McNemar" in verdict.message
    assert nb08.check_runner_run(str(folder / "results.json")).correct
    assert "not its accuracy" in nb08.check_runner_run(0.24).message
    assert "holds no results.json" in nb08.check_runner_run(tmp_path / "nowhere").message
    assert "baseline run" in nb08.check_runner_run(fake_run(tmp_path / "b", method="baseline")).message
    assert "another checkpoint" in nb08.check_runner_run(fake_run(tmp_path / "c", checkpoint_sha="0" * 64)).message
    assert "--limit 50" in nb08.check_runner_run(fake_run(tmp_path / "d", limit=30)).message


@pytest.mark.parametrize("answer", [..., None, "nine thousand", (1, 2)])
def test_blank_or_malformed_answers_get_a_message(answer, smollm2, texts, tmp_path):
    model, tokenizer = smollm2
    verdicts = [nb08.check_pause_budget(answer, model), nb08.check_full_finetune(answer, model, 4, 5),
                nb08.check_one_ahead(answer, model, tokenizer, texts[1], OPTIONS, {}),
                nb08.check_runner_run(answer)]
    for verdict in verdicts:
        assert isinstance(verdict, Feedback) and not verdict.correct and str(verdict).startswith("not yet: ")
        if answer is ... or answer is None:
            assert verdict.message.startswith("set answer_")
