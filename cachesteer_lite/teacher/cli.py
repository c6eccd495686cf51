"""The teacher's command line (endpoint from ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, or ``--api-key`` /
``--base-url``)::

    python -m cachesteer_lite teacher --task arc_challenge --split train --limit 100 --style default \\
        --out my_traces.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runs.cli import finite_float, positive_int
from ..tasks.data import load_items
from ..tasks.task import TASK_NAMES
from ..tasks.traces import STYLES
from .client import RetryPolicy, TeacherConfigError
from .generate import DEFAULT_TEACHER, TeacherError, generate_traces
from .store import REJECTED_SUFFIX


def run(arguments: argparse.Namespace) -> int:
    """Generate traces for the first ``--limit`` items of a task split; returns 0 when nothing is missing."""
    items = load_items(arguments.task, arguments.split, arguments.limit)
    try:
        report = generate_traces(
            items, arguments.out, style=arguments.style, model=arguments.model, base_url=arguments.base_url,
            api_key=arguments.api_key, concurrency=arguments.concurrency, max_tokens=arguments.max_tokens,
            temperature=arguments.temperature, timeout=arguments.timeout,
            retry=RetryPolicy(max_attempts=arguments.max_attempts), progress=not arguments.no_progress,
        )
    except TeacherConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TeacherError as error:
        print(error.report.summary())
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every reply that arrived is stored; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(report.summary())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``teacher`` to the command line."""
    parser = commands.add_parser("teacher", help="reasoning traces from an OpenAI-compatible teacher (resumable)",
                                 description=run.__doc__)
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="the first N items of the split (default: all)")
    parser.add_argument("--style", default="default", choices=STYLES)
    parser.add_argument("--out", required=True, type=Path,
                        help=f"accepted traces (JSONL); rejected ones go beside it as <stem>{REJECTED_SUFFIX}")
    parser.add_argument("--model", default=DEFAULT_TEACHER)
    parser.add_argument("--base-url", default=None, help="default: $OPENAI_BASE_URL, else OpenAI")
    parser.add_argument("--api-key", default=None, help="default: $OPENAI_API_KEY (prefer the variable)")
    parser.add_argument("--concurrency", type=positive_int, default=8)
    parser.add_argument("--max-tokens", type=positive_int, default=1024)
    parser.add_argument("--temperature", type=finite_float, default=0.0)
    parser.add_argument("--timeout", type=finite_float, default=120.0, help="seconds per request")
    parser.add_argument("--max-attempts", type=positive_int, default=RetryPolicy.max_attempts)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)
