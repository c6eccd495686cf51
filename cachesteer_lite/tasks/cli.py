"""The tasks' command: ``traces validate`` checks trace files against their schema and the task data::

    python -m cachesteer_lite traces validate data/traces/*.jsonl
"""

from __future__ import annotations

import argparse
from collections import Counter

from .traces import read_traces, validate_traces


def _report_file(path: str) -> bool:
    """Print a file's trace counts per task and style and its problems; True when it is valid."""
    try:
        traces = read_traces(path)
    except (OSError, ValueError) as error:
        print(f"{path}: ERROR {error}")
        return False
    print(f"{path}: {len(traces)} traces")
    for (task, style), count in sorted(Counter((trace.task, trace.style) for trace in traces).items()):
        print(f"  {task} / {style}: {count}")
    problems = validate_traces(traces)
    for problem in problems:
        print(f"  PROBLEM {problem}")
    print(f"  {len(problems)} problem(s)" if problems else "  OK")
    return not problems


def run_validate(args: argparse.Namespace) -> int:
    """Check trace files against the schema and the task data; exit 1 when any file has a problem."""
    results = [_report_file(path) for path in args.files]
    return 0 if all(results) else 1


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``traces validate`` to the command line."""
    parser = commands.add_parser("traces", help="reasoning-trace files")
    actions = parser.add_subparsers(dest="traces_command", required=True)
    validate = actions.add_parser("validate", help="check trace files against the schema and the task data",
                                  description=run_validate.__doc__)
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=run_validate)
