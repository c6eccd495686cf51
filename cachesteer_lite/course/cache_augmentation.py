"""Checkers for notebook 8, "Cache augmentation: a coprocessor that writes into the cache"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..augmentation import (
    AheadPerplexity,
    Augmenter,
    Coprocessor,
    PauseTokens,
    paired_difference,
    perplexity_by_ahead_position,
)
from ..augmentation.augmenters import LoRALinear
from ..augmentation.lookahead import evaluation_samples, tokenize_texts
from ..augmentation.training import TrainResult
from ..files import book_file, sha256
from ..findings import STORED_MODEL
from ..runs.results import load_run, stored_results_dir
from ..runs.statistics import paired_comparison
from .feedback import Feedback, checker, close, correct, wrong

STORED_COPROCESSOR = f"data/results/{STORED_MODEL}/cache_augmentation/runs/coprocessor_n16/checkpoint-000200"
CHECKED_TEXTS = 3  # held-out texts re-scored to check a perplexity answer (their split points come first)


@checker("answer_1 = the number of values the pause-token control trains for N_L = 16 (a whole number)")
def check_pause_budget(answer: int, model: PreTrainedModel, coprocessor: Coprocessor | None = None) -> Feedback:
    """Exercise 1. Names the slips: the notebook's own N_L, the coprocessor's count, one token's worth, one
    number per token. ``coprocessor`` (the notebook's) sizes the N_L = 16 coprocessor for comparison."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return wrong("give one number: the trainable values of PauseTokens(model, 16)")
    hidden = int(model.config.get_text_config().hidden_size)
    expected = PauseTokens(model, 16).n_trainable
    if answer == expected:
        if coprocessor is None:
            return correct(f"{expected:,} = 16 pause tokens x {hidden} numbers (the hidden size)")
        adapters = coprocessor.n_trainable - coprocessor.n_latents * hidden - 1  # LoRA weights: the rest is N_L-sized
        copro16 = adapters + expected + 1
        return correct(f"{expected:,} = 16 x {hidden}. The N_L = 16 coprocessor trains {adapters:,} adapter weights "
                       f"+ {expected:,} soft-token values + 1 gain = {copro16:,}, {copro16 / expected:.0f} times "
                       "more: the comparison fixes the number of latents, not the number of trainable values")
    if coprocessor is not None and answer == coprocessor.n_trainable:
        return wrong("that is the coprocessor's count: the control is PauseTokens, N_L embeddings and nothing else")
    if coprocessor is not None and answer == coprocessor.n_latents * hidden and coprocessor.n_latents != 16:
        return wrong(f"that is N_L = {coprocessor.n_latents}, the notebook's live setting: the exercise asks for 16")
    if answer == hidden:
        return wrong(f"that is one pause token ({hidden} numbers): there are 16")
    if answer == 16:
        return wrong(f"each pause token is a whole embedding of the hidden size ({hidden} numbers), not one number")
    return wrong("count the trainable values: PauseTokens(model, 16).n_trainable, or 16 x the hidden size")


def prefix_losses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                  augmenter: Augmenter | None, options: Mapping[str, Any]) -> list[float]:
    """Per-sample losses on the first :data:`CHECKED_TEXTS` texts: evaluation samples are drawn text by text
    from one seeded generator, so these are the first samples of a score of all ``texts`` with ``options``."""
    return perplexity_by_ahead_position(model, tokenizer, list(texts)[:CHECKED_TEXTS], augmenter,
                                        **{**options, "progress": False}).sample_loss


@checker('answer_2 = a dict {"plain model": ..., "coprocessor": ..., "pause": ...} of the AheadPerplexity each '
         "scores on `held_out` at n_ahead=1, the augmenters retrained with n_ahead=1")
def check_one_ahead(answer: Mapping[str, AheadPerplexity], model: PreTrainedModel,
                    tokenizer: PreTrainedTokenizerBase, held_out: Sequence[str], options: Mapping[str, Any],
                    trained: Mapping[str, TrainResult], live: Mapping[str, AheadPerplexity] | None = None) -> Feedback:
    """Exercise 2. No retraining: re-scores the first held-out texts with the plain model (and, for the usual
    slip, with the notebook's N_A-trained augmenters) and checks the answer's first samples against them."""
    names = ("plain model", "coprocessor", "pause")
    if not isinstance(answer, Mapping) or any(name not in answer for name in names):
        return wrong(f"give a dict with the keys {', '.join(repr(n) for n in names)}, like the notebook's `live`")
    if not all(isinstance(answer[name], AheadPerplexity) for name in names):
        return wrong("each value is what perplexity_by_ahead_position returns, an AheadPerplexity")
    scores = {name: answer[name] for name in names}
    if any(len(score.loss) != 1 for score in scores.values()):
        long = next(name for name, score in scores.items() if len(score.loss) != 1)
        return wrong(f"{long!r} was scored at {len(scores[long].loss)} ahead positions: score with n_ahead=1, "
                     "dict(options, n_ahead=1)")
    one = {**options, "n_ahead": 1}
    lengths = [len(ids) for ids in tokenize_texts(tokenizer, held_out, one.get("max_tokens", 256))]
    n_samples = len(evaluation_samples(lengths, 1, one.get("min_prefix", 8), one.get("positions_per_text", 4),
                                       one.get("seed", 0)))
    if any(score.n_samples != n_samples for score in scores.values()):
        return wrong(f"`held_out` with the notebook's options gives {n_samples} samples at n_ahead=1: score all "
                     "three on all of `held_out` with dict(options, n_ahead=1)")
    plain = prefix_losses(model, tokenizer, held_out, None, one)

    def matches(score: AheadPerplexity, reference: list[float]) -> bool:
        return all(close(a, b, 1e-3) for a, b in zip(score.sample_loss, reference, strict=False))

    if not matches(scores["plain model"], plain):
        return wrong('the plain model\'s scores are not those of held_out at n_ahead=1: score with '
                     "perplexity_by_ahead_position(model, tokenizer, held_out, None, **dict(options, n_ahead=1))")
    for kind in ("coprocessor", "pause"):
        if matches(scores[kind], prefix_losses(model, tokenizer, held_out, trained[kind].augmenter, one)):
            return wrong(f"the {kind} scored here is the one trained with n_ahead={options['n_ahead']}: train new "
                         'augmenters with TrainConfig(..., n_ahead=1) (in new folders) and score those')
    ppl = {name: score.perplexity[0] for name, score in scores.items()}
    d = paired_difference(scores["coprocessor"], scores["pause"])
    verdict = (f"perplexity of the next token: plain {ppl['plain model']:.2f}, coprocessor {ppl['coprocessor']:.2f}, "
               f"pause {ppl['pause']:.2f}; coprocessor minus pause {d['mean']:+.3f} nats [{d['ci95'][0]:+.3f}, "
               f"{d['ci95'][1]:+.3f}]")
    if live is not None:
        before = paired_difference(live["coprocessor"], live["pause"])
        verdict += f" (at n_ahead={len(live['coprocessor'].loss)}: {before['mean']:+.3f} nats)"
    return correct(verdict + ". With one ahead token the loss asks the latents only for the next token, which the "
                   "prefix already predicts; a longer horizon asks them to carry what comes later")


def full_copy_trainable(model: PreTrainedModel, n_latents: int) -> int:
    """Trainable values of a fully fine-tuned coprocessor: the decoder stack but its (shared) input embeddings,
    plus N_L soft tokens and the gain."""
    decoder = model.get_decoder()
    embeddings = sum(p.numel() for p in decoder.get_input_embeddings().parameters())
    hidden = int(model.config.get_text_config().hidden_size)
    return sum(p.numel() for p in decoder.parameters()) - embeddings + n_latents * hidden + 1


@checker("answer_3 = what train(...) returns for a coprocessor with lora_rank=None and the notebook's settings")
def check_full_finetune(answer: TrainResult, model: PreTrainedModel, n_latents: int, steps: int,
                        lora: TrainResult | None = None) -> Feedback:
    """Exercise 3: the trained object, not the training. Checks its kind, its latents, that no LoRA adapter is
    left (the trainable count of a full copy) and its number of steps; ``lora`` (the notebook's trained LoRA
    coprocessor) puts the two side by side."""
    augmenter = answer.augmenter if isinstance(answer, TrainResult) else answer
    if not isinstance(augmenter, Augmenter):
        return wrong("give the object train(...) returns (or its .augmenter)")
    if not isinstance(augmenter, Coprocessor):
        return wrong('this is the pause-token control: train TrainConfig(kind="coprocessor", lora_rank=None, ...)')
    if any(isinstance(module, LoRALinear) for module in augmenter.modules()):
        return wrong("this coprocessor has LoRA adapters: pass lora_rank=None to TrainConfig for a full copy")
    if augmenter.n_latents != n_latents:
        return wrong(f"it has {augmenter.n_latents} latents: keep the notebook's settings (N_L = {n_latents}) so "
                     "that only the fine-tuning differs")
    expected = full_copy_trainable(model, n_latents)
    if augmenter.n_trainable != expected:
        return wrong(f"it trains {augmenter.n_trainable:,} values, not the {expected:,} of a full copy: build it with "
                     "train(..., TrainConfig(kind=\"coprocessor\", lora_rank=None, **settings), ...)")
    if isinstance(answer, TrainResult) and len(answer.losses) != steps:
        return wrong(f"it trained {len(answer.losses)} steps, the LoRA one {steps}: use the same settings "
                     "(train in a new folder, or an old checkpoint resumes)")
    message = f"a full copy trains {expected:,} values"
    if lora is not None:
        tail = min(8, steps)
        full_loss = sum(answer.losses[-tail:]) / tail if isinstance(answer, TrainResult) else None
        lora_loss = sum(lora.losses[-tail:]) / tail
        message += f", {expected / lora.augmenter.n_trainable:.0f} times the LoRA coprocessor's"
        if full_loss is not None:
            message += (f"; mean training loss of the last {tail} steps {full_loss:.3f} against {lora_loss:.3f} "
                        "for LoRA")
    return correct(message + ". Compare their held-out scores with paired_difference")


def run_folder(answer: Any) -> Path | str:
    """The run folder an answer names (the folder, or its results.json), or a sentence saying what is wrong."""
    if isinstance(answer, (int, float)):
        return "give the run's folder (where the runner wrote results.json), not its accuracy"
    if not isinstance(answer, (str, Path)):
        return "give the run's folder, a path"
    path = Path(answer)
    folder = path.parent if path.name == "results.json" else path
    if not (folder / "results.json").is_file():
        return (f"{folder} holds no results.json: the runner writes OUTPUT_DIR/{{model}}/{{task}}/{{method}}/ and "
                "adds results.json when the run has finished")
    return folder


@checker("answer_4 = the folder of your ARC-Challenge run of the stored coprocessor (the one holding results.json)")
def check_runner_run(answer: str | Path, limit: int = 50, task: str = "arc_challenge") -> Feedback:
    """Exercise 4: reads the learner's run (results.json and records) and pairs it with the stored baseline's
    records on the same questions. Checks the task, the method, the checkpoint (by its checksum), the questions
    and the generation budget."""
    folder = run_folder(answer)
    if isinstance(folder, str):
        return wrong(folder)
    result, records = load_run(folder)
    config, details = result["config"], result.get("method_details", {})
    if result["task"] != task:
        return wrong(f"this run answered {result['task']}: the exercise asks for --task {task}")
    if result["method"] != "cache_augmentation":
        return wrong(f"this is a {result['method']} run: use --method cache_augmentation with --checkpoint")
    if details.get("augmenter_sha256") != sha256(book_file(f"{STORED_COPROCESSOR}/augmenter.safetensors")):
        return wrong("this run used another checkpoint: --checkpoint data/results/smollm2-135m-instruct/"
                     "cache_augmentation/runs/coprocessor_n16 (the stored N_L = 16 coprocessor)")
    if config["split"] != "test" or config["start"] != 0 or result["n"] != limit:
        return wrong(f"this run answered {result['n']} {config['split']} questions from {config['start']}: the "
                     f"exercise asks for the first {limit} test questions (--limit {limit})")
    baseline_dir = stored_results_dir() / result["model"] / task / "baseline"
    if not (baseline_dir / "results.json").is_file():
        return wrong(f"the book stores no {task} baseline for {result['model']}: run the default model")
    baseline = load_run(baseline_dir)
    same = {"max_new_tokens", "do_sample", "force_choice"}
    if any(config[key] != baseline.result["config"][key] for key in same):
        return wrong("keep the stored baseline's generation settings (greedy, 256 new tokens, the forced choice): "
                     "the runner's defaults")
    paired = paired_comparison({i: baseline.records[i] for i in records}, records)
    ours = sum(bool(r["correct"]) for r in records.values())
    if not close(result["accuracy"], ours / len(records)):
        return wrong("results.json does not match its items file: rerun into a fresh --output-dir")
    theirs = paired["both"] + paired["only_first"]
    return correct(f"{ours} of {limit} right with one augmentation against {theirs} for the stored baseline on the "
                   f"same questions; only the augmented model on {paired['only_second']}, only the baseline on "
                   f"{paired['only_first']} (exact McNemar p = {paired['p_value']:.2f}). On "
                   f"{limit} questions a difference of a few answers is chance")
