"""The runs' commands: ``evaluate`` (methods x tasks, optionally choosing settings held out first) and ``results``
(every stored result beside the paper's)::

    python -m cachesteer_lite evaluate --task arc_challenge --method cache_steering --limit 300
    python -m cachesteer_lite evaluate --task arc_challenge csqa piqa --method baseline cot cache_steering \\
        cache_steering_cot --limit 300 --max-new-tokens 256 --select --select-limit 100
    python -m cachesteer_lite evaluate --model Qwen/Qwen2-0.5B-Instruct --preset paper --task arc_challenge \
        --method baseline cache_steering
    python -m cachesteer_lite results
    python -m cachesteer_lite ablate --task arc_challenge --limit 100 --max-new-tokens 256
    torchrun --nproc_per_node 4 -m cachesteer_lite evaluate --task piqa --method baseline --dtype auto

Under ``torchrun`` (or ``accelerate launch``) each process takes its share of the batches, on its own GPU, into
the same run directory (:mod:`parallel`); ``--device-map auto`` instead spreads one model over the GPUs.

``--preset paper`` runs a model with the paper's best settings for it (``best_args.yaml``): its pairs,
demonstrations and coefficients, the whole evaluation split, 768 new tokens, and the authors' GPT-4o traces,
downloaded at run time. Options given explicitly win over the preset.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.caa import MODES as CAA_MODES
from ..core.checks import finite_number, integer
from ..core.models import DEFAULT_MODEL, DTYPES, load_model
from ..tasks.author_traces import AuthorTracesUnavailable, author_traces_file
from ..tasks.contrastive import SELECTIONS
from ..tasks.task import TASK_NAMES
from ..tasks.traces import STYLES
from .ablation import ABLATION_BASE, ABLATION_FOLDER, ABLATION_VALUES, ablation_points, run_ablation
from .config import EvalConfig
from .methods import METHODS, Method, get_method
from .paper import PAPER_HUB_IDS, PAPER_MAX_NEW_TOKENS, PAPER_OPTIONS, best_settings, paper_model_for
from .parallel import World, current_world, process_device, process_group
from .results import collect, comparison_table
from .runner import check_config, evaluate, run_directory
from .selection import CAA_GRID_MULTIPLIERS, SELECTION_GRID, apply_point, select_settings


def _argument(check: Callable[[str, Any], Any], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: convert the text, then check the value; a failure is a usage error naming what is
    allowed."""

    def parse(text: str) -> Any:
        try:
            return check("the value", convert(text))
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    return parse


finite_float = _argument(finite_number, float)
any_int = _argument(integer, int)
positive_int = _argument(lambda name, value: integer(name, value, at_least=1), int)
non_negative_int = _argument(lambda name, value: integer(name, value, at_least=0), int)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (``TQDM_DISABLE=1`` in the environment does the same)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (as TQDM_DISABLE=1 does)")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``evaluate``."""
    parser.add_argument("--task", nargs="+", required=True, metavar="TASK", choices=TASK_NAMES,
                        help=f"one or more of: {', '.join(TASK_NAMES)}")
    parser.add_argument("--method", nargs="+", required=True, metavar="METHOD", choices=list(METHODS),
                        help=f"one or more of: {', '.join(METHODS)}")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded model, local folder or hub id")
    parser.add_argument("--device", default=None, help="default: CUDA when present (cuda:LOCAL_RANK under "
                        "torchrun), else CPU")
    parser.add_argument("--device-map", default=None, help="spread the model over the GPUs, e.g. 'auto' (for a "
                        "model too big for one); not with --device")
    parser.add_argument("--dtype", choices=[*DTYPES, "auto"], default="float32", help="weights and activations "
                        "(default float32, as the paper); auto: bfloat16 or float16 on CUDA, float32 on a CPU")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (1 is much faster on a CPU shared with other jobs)")
    parser.add_argument("--output-dir", default="data/results", type=Path)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="first N items of the evaluation split (default: all)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=PAPER_MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--no-force-choice", action="store_true")
    parser.add_argument("--sampling", action="store_true", help="sample (one run per seed) instead of greedy")
    parser.add_argument("--seeds", type=any_int, nargs="+", help="sampling seeds (default: the paper's five)")
    parser.add_argument("--temperature", type=finite_float)
    parser.add_argument("--top-p", type=finite_float)
    parser.add_argument("--top-k", type=positive_int)
    add_progress_argument(parser)
    steering = parser.add_argument_group("cache steering (defaults: the paper's SmolLM2 settings)")
    steering.add_argument("--c-values", type=finite_float)
    steering.add_argument("--c-keys", type=finite_float, help="default 0 (the preset's value with --preset)")
    steering.add_argument("--n-pairs", type=positive_int)
    steering.add_argument("--n-demonstrations", type=positive_int)
    steering.add_argument("--selection", choices=SELECTIONS, default="nearest")
    steering.add_argument("--selection-seed", type=any_int, default=0)
    steering.add_argument("--traces", help="trace file for the demonstrations (default data/traces/{task}.jsonl)")
    steering.add_argument("--style", choices=STYLES, help="reasoning style of the traces (default: default)")
    steering.add_argument("--layers", type=non_negative_int, nargs="+",
                          help="layers to steer (default: all but layer 0)")
    caa = parser.add_argument_group("activation steering, method caa (defaults: the paper's SmolLM2 settings)")
    caa.add_argument("--layer", type=non_negative_int, help="the one layer CAA steers")
    caa.add_argument("--multiplier", type=finite_float)
    caa.add_argument("--caa-mode", choices=CAA_MODES, help="paper (no KV cache, as the paper), cached or one_shot")
    augmentation = parser.add_argument_group("cache augmentation, method cache_augmentation")
    augmentation.add_argument("--checkpoint", help="a coprocessor (or pause-token) run or checkpoint folder")
    select = parser.add_argument_group("held-out selection of the steering settings")
    select.add_argument("--select", action="store_true", help="choose c_values, pairs and demonstrations on "
                        "held-out items first, then evaluate with the best")
    select.add_argument("--select-limit", type=positive_int, default=100, help="held-out items per grid point")
    select.add_argument("--grid-c-values", type=finite_float, nargs="+", default=list(SELECTION_GRID["c_values"]))
    select.add_argument("--grid-n-pairs", type=positive_int, nargs="+", default=list(SELECTION_GRID["n_pairs"]))
    select.add_argument("--grid-n-demonstrations", type=positive_int, nargs="+",
                        default=list(SELECTION_GRID["n_demonstrations"]))
    select.add_argument("--grid-layers", type=non_negative_int, nargs="+",
                        help="CAA layers (default: the paper's layer)")
    select.add_argument("--grid-multipliers", type=finite_float, nargs="+", default=list(CAA_GRID_MULTIPLIERS),
                        help="CAA multipliers (default: the paper's search grid)")
    parser.add_argument("--paper-model", default=None, help="paper model to compare with (default: the closest)")
    parser.add_argument("--preset", choices=("paper",), help="paper: the paper's best settings for the model "
                        "(or --paper-model) and the authors' GPT-4o traces, downloaded at run time")


def _options(args: argparse.Namespace, method: Method) -> dict[str, Any]:
    """The command line's option values that ``method`` reads (CAA's layer, multiplier and mode; the
    augmentation's checkpoint)."""
    given = {"layer": args.layer, "multiplier": args.multiplier, "mode": args.caa_mode, "checkpoint": args.checkpoint}
    return {name: value for name, value in given.items() if value is not None and name in method.options}


def preset_settings(args: argparse.Namespace, task: str, method: Method) -> dict[str, Any]:
    """The settings ``--preset paper`` gives a run: the paper model's best settings (``best_args.yaml``) and the
    authors' traces for the methods that build contrastive pairs; nothing without a preset."""
    if args.preset is None:
        return {}
    paper_model = args.paper_model or paper_model_for(args.model)
    if paper_model not in PAPER_HUB_IDS:
        raise ValueError(f"--preset paper needs one of the paper's models ({', '.join(PAPER_HUB_IDS.values())}) "
                         f"or --paper-model naming whose settings to use; {args.model!r} is none of them")
    settings: dict[str, Any] = dict(best_settings(paper_model, task, method.name))
    if "n_pairs" in method.settings:
        settings["traces"] = str(author_traces_file(task))
    return settings


def _config(args: argparse.Namespace, task: str, method: Method) -> EvalConfig:
    preset = preset_settings(args, task, method)

    def given(name: str) -> Any:
        """The command line's value of a setting, else the preset's."""
        value = getattr(args, name)
        return value if value is not None else preset.get(name)

    return EvalConfig(
        task=task, method=method.name, model=args.model, limit=args.limit, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, force_choice=not args.no_force_choice, do_sample=args.sampling,
        seeds=tuple(args.seeds) if args.seeds else None, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k,
        c_values=given("c_values"), c_keys=given("c_keys") or 0.0, n_pairs=given("n_pairs"),
        n_demonstrations=given("n_demonstrations"), selection=args.selection, selection_seed=args.selection_seed,
        traces=given("traces"), style=args.style,
        layers=tuple(args.layers) if args.layers else None, options=_options(args, method),
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate every task x method, optionally selecting steering settings first, and print the results
    beside the paper's."""
    try:  # every setting is checked before the model loads: a bad one is a usage error, not a late traceback
        configs = {(task, name): check_config(_config(args, task, get_method(name)))
                   for task, name in product(args.task, args.method)}
    except (TypeError, ValueError) as error:
        args.parser.error(str(error))
    except AuthorTracesUnavailable as error:
        raise SystemExit(f"--preset paper: {error}") from error
    if args.device is not None and args.device_map is not None:
        args.parser.error("give --device or --device-map, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    world = current_world()  # one process, or one of several that torchrun started (runs.parallel)
    if world.parallel and args.device_map is not None:
        args.parser.error("--device-map spreads one model over all the GPUs; with several processes each takes "
                          "its own GPU: use one or the other")
    device = args.device or (None if args.device_map else process_device(world))
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=device, device_map=args.device_map,
                                  progress=not args.no_progress)
    with process_group(world):
        collected = _evaluate_all(args, configs, model, tokenizer, world)
    if world.is_main:
        print(comparison_table(collected, paper_model=args.paper_model))
    return 0


def _evaluate_all(args: argparse.Namespace, configs: dict[tuple[str, str], EvalConfig], model: PreTrainedModel,
                  tokenizer: PreTrainedTokenizerBase, world: World) -> list[dict[str, Any]]:
    """Run every configuration (after its held-out selection when asked), printing each result from the main
    process, and return the results."""
    memo: dict = {}
    collected = []
    for (task, name), config in configs.items():
        method = get_method(name)
        run_dir = run_directory(args.output_dir, args.model, task, method.name, sampling=config.do_sample)
        if args.select and ("c_values" in method.settings or method.options):
            paper_layer = PAPER_OPTIONS.get((task, method.name), {}).get("layer")
            grids = {"layer": args.grid_layers or ([paper_layer] if paper_layer is not None else None),
                     "multiplier": args.grid_multipliers}
            chosen = select_settings(model, tokenizer, config, run_dir / "selection", limit=args.select_limit,
                                     c_values=args.grid_c_values, n_pairs=args.grid_n_pairs,
                                     n_demonstrations=args.grid_n_demonstrations, memo=memo,
                                     options={k: v for k, v in grids.items() if k in method.options and v},
                                     progress=not args.no_progress)
            if world.is_main:
                print(f"{task} {method.name}: selected {chosen['best']} "
                      f"(held-out accuracy {chosen['best_accuracy']:.3f})")
            config = apply_point(config, chosen["best"])
        result = evaluate(model, tokenizer, config, run_dir, memo=memo, progress=not args.no_progress)
        spread = (f"sd {result['accuracy_sd']}" if result["ci95"] is None
                  else f"95% CI [{result['ci95'][0]:.4f}, {result['ci95'][1]:.4f}]")
        if world.is_main:
            print(f"{task} {method.name}: accuracy {result['accuracy']:.4f} ({spread}), "
                  f"{result['mean_words']:.0f} words, {result['wall_time_s']:.0f} s -> {run_dir / 'results.json'}")
        collected.append(result)
    return collected


def run_ablate(args: argparse.Namespace) -> int:
    """Run the ablation of cache steering (one setting varied at a time around the base point) on held-out items,
    resumable, and print every finished point."""
    grids = {name: getattr(args, f"grid_{name}") for name in ABLATION_VALUES}
    try:
        points = ablation_points(ABLATION_BASE, grids)
        config = check_config(EvalConfig(task=args.task, method=args.method, model=args.model,
                                         max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
    except (TypeError, ValueError) as error:
        args.parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, progress=not args.no_progress)
    run_dir = run_directory(args.output_dir, args.model, args.task, args.method) / ABLATION_FOLDER
    rows = run_ablation(model, tokenizer, config, run_dir, limit=args.limit, points=points,
                        progress=not args.no_progress)
    for row in rows:
        print(f"{row['varied'] or 'base':16} n_pairs {row['n_pairs']:>4} demos {row['n_demonstrations']:>2} "
              f"c_values {row['c_values']:>4g} c_keys {row['c_keys']:>4g}: accuracy {100 * row['accuracy']:5.1f}% "
              f"(response alone {100 * row['response_accuracy']:5.1f}%, states an answer {100 * row['stated']:3.0f}%),"
              f" {row['mean_words']:.0f} words, {100 * row['degenerate']:.0f}% loop")
    return 0


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ablate``: the model and run size, and each varied setting's values."""
    parser.add_argument("--task", default="arc_challenge", choices=TASK_NAMES)
    parser.add_argument("--method", default="cache_steering", choices=("cache_steering", "cache_steering_cot"))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded model, local folder or hub id")
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    parser.add_argument("--dtype", choices=[*DTYPES, "auto"], default="float32")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    parser.add_argument("--output-dir", default="data/results", type=Path)
    parser.add_argument("--limit", type=positive_int, default=100, help="held-out items per point")
    parser.add_argument("--max-new-tokens", type=positive_int, default=PAPER_MAX_NEW_TOKENS)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    add_progress_argument(parser)
    grids = parser.add_argument_group(f"the values of each setting (the others stay at the base point "
                                      f"{ABLATION_BASE})")
    grids.add_argument("--grid-n-pairs", type=positive_int, nargs="+", default=list(ABLATION_VALUES["n_pairs"]))
    grids.add_argument("--grid-n-demonstrations", type=positive_int, nargs="+",
                       default=list(ABLATION_VALUES["n_demonstrations"]))
    grids.add_argument("--grid-c-keys", type=finite_float, nargs="+", default=list(ABLATION_VALUES["c_keys"]))
    grids.add_argument("--grid-c-values", type=finite_float, nargs="+", default=list(ABLATION_VALUES["c_values"]))


def run_results(args: argparse.Namespace) -> int:
    """Print every stored result beside the paper's."""
    print(comparison_table(collect(args.results_dir, args.model)))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``results`` to the command line."""
    evaluate_parser = commands.add_parser("evaluate", help="evaluate methods on tasks (resumable)",
                                          description=run_evaluate.__doc__)
    add_evaluate_arguments(evaluate_parser)
    evaluate_parser.set_defaults(handler=run_evaluate, parser=evaluate_parser)
    ablate_parser = commands.add_parser("ablate", help="ablate cache steering's settings on held-out items "
                                        "(resumable)", description=run_ablate.__doc__)
    add_ablate_arguments(ablate_parser)
    ablate_parser.set_defaults(handler=run_ablate, parser=ablate_parser)
    results_parser = commands.add_parser("results", help="stored results beside the paper's",
                                         description=run_results.__doc__)
    results_parser.add_argument("--results-dir", type=Path, default=None, help="default: the book's data/results")
    results_parser.add_argument("--model", default=None, help="only this model's runs")
    results_parser.set_defaults(handler=run_results)
