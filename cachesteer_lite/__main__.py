"""The command line: ``python -m cachesteer_lite COMMAND ...`` (installed as ``cachesteer`` too).

Every layer adds its own commands; ``python -m cachesteer_lite COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import book, files
from .augmentation import cli as augmentation_cli
from .runs import cli as runs_cli
from .style import transfer
from .tasks import cli as tasks_cli
from .teacher import cli as teacher_cli


def parser() -> argparse.ArgumentParser:
    """The command line's parser, with every layer's commands."""
    top = argparse.ArgumentParser(prog="python -m cachesteer_lite", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (runs_cli.register, tasks_cli.register, teacher_cli.register, augmentation_cli.register,
                     transfer.register, book.register, files.register):
        register(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status is returned."""
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
