"""What the book's notebooks and pages share: printing answers, reading stored runs, and the generated parts of
the reproducibility page, the README, the course guide and the Colab page.

Those pages hold blocks that code writes (``python -m cachesteer_lite pages``) and a test checks: the links to the
repository (Colab badges, install cells, the book's buttons, the package homepage: all from
:data:`files.REPOSITORY`), the results table (:func:`runs.results.comparison_table` of every stored run), the
deviation tables, built from the ``DEVIATIONS`` lists that sit next to the code that deviates plus the choices of
the book's own stored runs and notebooks listed here, the speed table of the stored core benchmark
(``benchmarks/bench_core.py``) and the GPU estimates (:mod:`runs.budget`). So the pages and the code cannot
disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from typing import Any

from . import augmentation, files, findings
from .core import prompts, steering
from .core.deviations import Deviation, markdown_table
from .course import guide
from .files import checkout
from .runs import ablation, answer_source, budget, controls, results, runner, sampling
from .runs.paper import BEST_ARGS
from .runs.results import StoredRun, collect, comparison_table, stored_results_dir
from .tasks import contrastive, data, scoring

STORED_MODEL = findings.STORED_MODEL  # the model of the book's stored runs
PAGE = "book/reproducibility.md"
COURSE_GUIDE = "book/course_guide.md"
COLAB_PAGE = "book/colab.md"
LANDING_PAGE = "book/intro.md"
README = "README.md"
# Files that link to the repository; `pages` writes those links from files.REPOSITORY and files.BRANCH.
LINKED_FILES = (README, "pyproject.toml", "_config.yml", "notebooks/[0-9][0-9]_*.ipynb")
CORE_BENCHMARK = "benchmarks/core_cpu.json"  # in the stored results: what the speed table shows


def paper_settings(paper_model: str = "SmolLM2-360M-Instruct") -> str:
    """The paper's best cache-steering settings of one model, task by task, from ``best_args.yaml``
    (:data:`runs.paper.BEST_ARGS`): pairs, demonstrations and ``c_values``, with the CoT-prefix variant's changes."""
    names = {"arc_challenge": "ARC", "csqa": "CommonsenseQA", "piqa": "PIQA", "gsm8k": "GSM8K"}
    parts = []
    for task, name in names.items():
        (demonstrations, pairs, c_keys, c_values), prefix = BEST_ARGS[(paper_model, task)]
        text = f"{name} {pairs} pairs of {demonstrations} at `c_values` {c_values:g}"
        text += f", `c_keys` {c_keys:g}" if c_keys else ""
        changes = [f"{label} {prefix[key]:g}" for key, label in (("n_pairs", "pairs"), ("n_demonstrations",
                   "demonstrations"), ("c_values", "`c_values`")) if key in prefix]
        parts.append(text + (f" ({', '.join(changes)} with the CoT prompt)" if changes else ""))
    return f"`best_args.yaml` for {paper_model}: " + "; ".join(parts)


MODEL_DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "Model weights",
        "full-precision checkpoints (run in fp32) of SmolLM2-360M-Instruct and larger models",
        "on a CPU: SmolLM2-135M-Instruct, from a 4-bit Q4_1 GGUF file dequantised to fp32",
        "a smaller model, and rounded weights: absolute accuracies cannot equal the paper's. On a GPU the "
        "notebooks accept the paper's hub models",
    ),
)
# How the book's stored runs (scripts/reproduce_table.sh) and its notebooks' quick runs differ from the paper.
RUN_DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "Evaluation subset",
        "the whole evaluation split (1172–1838 questions)",
        "the first 300 questions of each split (the library takes the whole split, or its first `limit` items in "
        "dataset order, recorded)",
        "intervals about twice as wide as the paper's would be",
    ),
    Deviation(
        "Answer length in the stored runs",
        "`max_new_tokens` = 768",
        "256 (`scripts/reproduce_table.sh`), to fit 16 runs of 300 questions on a CPU",
        "answers longer than 256 tokens are cut before the extraction step reads them: steered answers are hit "
        "hardest, so their word counts are lower bounds and their accuracy may be too",
    ),
    Deviation(
        "Steering settings of the stored runs",
        f"{paper_settings()}; how they were chosen is not documented",
        "100 pairs (all the shipped traces cover) of 5 demonstrations; `c_values` chosen from {2, 6, 10} "
        "({1, 2, 4} for GSM8K) on 50 held-out questions, a tie going to the first (smallest) value",
        "fewer, shorter demonstrations make a noisier vector; 50 held-out questions can only tell large "
        "differences apart, and the tie rule favours the mildest edit (CommonsenseQA: 26% at both 2 and 6, so 2 "
        "was used)",
    ),
    Deviation(
        "GSM8K's reasoning source",
        "GPT-4o traces (`gsm8k-oai`) in every configuration of `best_args.yaml`; only the SmolLM2 GSM8K CAA search "
        "used the human solutions (`gsm8k`)",
        "the human solutions of the GSM8K train split (calculator tags removed) for every stored GSM8K vector: "
        "the authors' GPT-4o traces carry no licence, so the book does not ship them; `--preset paper` fetches "
        "them at run time",
        "the positive demonstrations differ in wording and length, so our GSM8K vector is not the paper's",
    ),
    Deviation(
        "Answer budget of activation steering",
        "`max_new_tokens` 256–512 for CAA (512 for SmolLM2-360M on ARC and CommonsenseQA), 768 for cache steering "
        "and the baselines",
        "256 for every method of the stored runs",
        "in the paper a CAA row and a cache-steering row differ in budget as well as in method; ours differ in "
        "method only",
    ),
    Deviation(
        "Activation steering (CAA) in the stored runs",
        "no KV cache: every forward pass recomputes the sequence and steers its last position; 200 pairs; the "
        "layer and a multiplier from {0.5, 1, 3}",
        "the cached mode (each new token steered once and kept in the cache), the same 100 pairs of 5 "
        "demonstrations as cache steering, the layer chosen from 5, 15 and 25 of 30 (15 is mid-depth, like the "
        "paper's 14–17 of 32) and the multiplier from {0.5, 1, 3, 8} on the same 50 held-out items "
        "(`scripts/reproduce_table.sh TASK caa`): layer 15 on ARC-Challenge and CommonsenseQA, 25 on PIQA, 5 on "
        "GSM8K",
        "the paper's mode costs a whole-sequence pass per token, which a CPU cannot afford at 256 tokens; in it, "
        "earlier tokens are re-read unsteered, in ours they stay steered (notebook 6 times all three modes). On "
        "PIQA the held-out choice (layer 25, multiplier 8) writes the same string of symbols for every question, so "
        "that row is the extraction step's answer alone",
    ),
    Deviation(
        "Demonstrations in the notebooks' live runs",
        "nearest neighbours by sentence embedding, *N* = 100–400 pairs, *k* = 5–12",
        "notebooks 3 and 4: a seeded random draw, *N* = 24 and 12 pairs of *k* = 3 in the `book` size the pages "
        "show (*N* = 100, *k* = 10 in `full`)",
        "fewer, less similar demonstrations; the library implements the paper's nearest-neighbour selection",
    ),
    Deviation(
        "Answer length in the notebooks' live runs",
        "`max_new_tokens` = 768",
        "160 in notebook 4's `book` size (the pages), 64 in `quick`",
        "long answers are cut off; lengths there are lower bounds",
    ),
)
# The deviation tables of the reproducibility page, by block name.
DEVIATION_GROUPS: dict[str, tuple[Deviation, ...]] = {
    "deviations-steering": MODEL_DEVIATIONS + prompts.DEVIATIONS + steering.DEVIATIONS + data.DEVIATIONS
    + contrastive.DEVIATIONS + scoring.DEVIATIONS + runner.DEVIATIONS + RUN_DEVIATIONS,
    "deviations-augmentation": augmentation.DEVIATIONS,
}


def show(text: str, width: int = 110) -> str:
    """A generated text for printing: each non-empty line wrapped at ``width`` characters."""
    return "\n".join(textwrap.fill(line, width) for line in text.strip().splitlines() if line.strip())


def stored_run(task: str, method: str, model: str = STORED_MODEL) -> StoredRun | None:
    """A finished stored run of the book (``data/results/{model}/{task}/{method}``), or None when there is none."""
    return results.stored_run(task, method, model)


def speed_table(report: dict[str, Any]) -> str:
    """The README's and the reproducibility page's speed table: the ratios of one ``bench_core`` report."""
    run, rows = report["run"], ["| what | measured | ratio |", "|---|---|---|"]
    for d in report["decoding"]:
        rows.append(f"| decoding, batch {d['batch_size']} ({d['new_tokens_per_prompt']} tokens x {d['n_prompts']} "
                    f"ARC prompts) | plain {d['plain']['tokens_per_s']:.1f} tok/s, cache-steered "
                    f"{d['steered']['tokens_per_s']:.1f} tok/s | {d['ratio_steered_over_plain_tokens_per_s']:.3f} |")
    for e in report["extraction"]:
        rows.append(f"| extraction, {e['prompts']}, {e['mean_prompt_tokens']:.0f} tokens a prompt | default "
                    f"{e['default_pairs_per_s']:.2f} pairs/s, one at a time {e['one_at_a_time_pairs_per_s']:.2f} "
                    f"pairs/s; padding efficiency {e['padding_efficiency_default']:.0%} (fixed batches of 16: "
                    f"{e['padding_efficiency_fixed_16']:.0%}) | {e['ratio_default_over_one_at_a_time']:.2f}x |")
    evaluation = report["evaluation"]
    plans = {name: evaluation[name] for name in ("sorted", "dataset_order", "split_90")}
    measured = "; ".join(
        f"{label} {plans[name]['questions_per_minute']:.1f} questions/min in {sum(plans[name]['batches'].values())} "
        f"batches ({plans[name]['padding_efficiency']['answers']:.0%} of the answer batches' slots real)"
        for name, label in (("sorted", "sorted by length (default)"), ("dataset_order", "dataset order"),
                            ("split_90", "split until the prompts fill 90%")))
    rows.append(f"| evaluation, {evaluation['n_questions']} ARC questions (an answer of at most "
                f"{evaluation['max_new_tokens']} tokens and its scoring step), at most {evaluation['max_rows']} "
                f"a batch | {measured} | {evaluation['ratio_sorted_over_dataset_order']:.2f}x over dataset order, "
                f"{evaluation['ratio_sorted_over_split_90']:.2f}x over split |")
    load = report["load"]
    rows.append(f"| loading the embedded model | first load {load['first_load_s']:.1f} s (GGUF dequantised, converted "
                f"once), later loads {load['later_load_s']:.2f} s | |")
    hardware, versions = run["hardware"], run["versions"]
    caption = (f"The stored run ({run['date'][:10]}, {hardware['cpu_count']}-core {hardware['processor']} "
               f"{hardware['device'].upper()}, {hardware['torch_threads']} threads, torch {versions['torch']}, "
               f"transformers {versions['transformers']}, {report['wall_time_s'] / 60:.0f} min):")
    return caption + "\n\n" + "\n".join(rows)


def page_blocks() -> dict[str, dict[str, str]]:
    """The generated blocks of each page, by page and block name: the results table, the answer sources, the offset
    control, the ablation, the sampling table, the deviation tables, the speed table, and the course guide's exercise
    and session tables (from the notebooks of the checkout)."""
    report = json.loads((stored_results_dir() / CORE_BENCHMARK).read_text(encoding="utf-8"))
    speed = {"speed-table": speed_table(report)}
    blocks = {"results-table": comparison_table(collect(model=STORED_MODEL)),
              "answer-sources": answer_source.source_table(model=STORED_MODEL),
              "offset-control": controls.offset_table(STORED_MODEL),
              "ablation": ablation.ablation_table(ablation.stored_ablation_dir(STORED_MODEL)),
              "sampling": sampling.sampling_table(STORED_MODEL)}
    blocks.update({name: markdown_table(rows) for name, rows in DEVIATION_GROUPS.items()})
    pages = {PAGE: blocks | speed, README: speed, COLAB_PAGE: {"gpu-table": budget.gpu_table()},
             LANDING_PAGE: {"findings": findings.findings_markdown()}}
    root = checkout()
    if root is not None:
        pages[COURSE_GUIDE] = guide.guide_blocks(root / "notebooks")
    return pages


def with_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the part between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` replaced by each block."""
    for name, content in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise ValueError(f"the page needs exactly one {start} ... {end} block")
        before, rest = text.split(start)
        text = f"{before}{start}\n{content}\n{end}{rest.split(end)[1]}"
    return text


def link_rules() -> tuple[tuple[str, str], ...]:
    """(pattern, replacement) pairs that rewrite every link to the repository from :data:`files.REPOSITORY` and
    :data:`files.BRANCH`, whatever repository or branch the link named before."""
    colab = files.colab_url("notebooks/x").removesuffix("notebooks/x")
    return (
        (r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/", colab),
        (r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?:@[\w.-]+)?(?=\\?\")", f"git+{files.REPOSITORY}@{files.BRANCH}"),
        (r'(?m)^Homepage = "https://github\.com/[^"]*"$', f'Homepage = "{files.REPOSITORY}"'),
        (r"(?m)^  url: https://github\.com/\S*$", f"  url: {files.REPOSITORY}"),
        (r"(?m)^  branch: \S+$", f"  branch: {files.BRANCH}"),
    )


def with_repository_links(text: str) -> str:
    """``text`` with its links to the repository written from :data:`files.REPOSITORY` (see :func:`link_rules`)."""
    for pattern, replacement in link_rules():
        text = re.sub(pattern, replacement.replace("\\", "\\\\"), text)  # the replacement is literal text
    return text


def generated_files() -> dict[str, dict[str, str]]:
    """Every file ``pages`` writes, by repository-relative name, with its generated blocks (links only: none)."""
    root = checkout()
    if root is None:
        raise SystemExit("the book's pages are in a checkout of the repository; run this command from one")
    linked: dict[str, dict[str, str]] = {path.relative_to(root).as_posix(): {}
                                         for pattern in LINKED_FILES for path in sorted(root.glob(pattern))}
    return linked | page_blocks()


def run_pages(args: argparse.Namespace) -> int:
    """Write the generated blocks and the repository links into the book's pages, the notebooks, the README and
    the configuration files (with ``--check``: only say whether they are current)."""
    root = checkout()
    if root is None:
        raise SystemExit("the book's pages are in a checkout of the repository; run this command from one")
    current = True
    for page, blocks in generated_files().items():
        path = root / page
        text = path.read_text(encoding="utf-8")
        updated = with_repository_links(with_blocks(text, blocks))
        current = current and updated == text
        if args.check:
            print(f"{page}: {'up to date' if updated == text else 'out of date: run python -m cachesteer_lite pages'}")
            continue
        path.write_text(updated, encoding="utf-8")
        print(f"{page}: {'updated' if updated != text else 'already up to date'}")
    return 0 if current or not args.check else 1


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``pages`` to the command line."""
    parser = commands.add_parser("pages", help="write the generated tables and repository links of the book's pages",
                                 description=run_pages.__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is out of date; change nothing")
    parser.set_defaults(handler=run_pages)
