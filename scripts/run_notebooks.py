"""Execute the book's notebooks from a clean kernel, each in an empty scratch folder, and say how long each took.

CI uses it for the environments the book build does not cover, at the ``smoke`` run size:

* a pip install without the repository (``scripts/wheel_check.sh`` runs this script with the fresh environment's
  Python, so the kernels import the installed wheel; ``--serve ROOT`` serves ROOT's files on loopback as the remote
  the package downloads its data files from);
* tiny random models of four architectures (``--model FOLDER``, folders written by ``scripts/tiny_models.py``).

and for the book itself:

* ``--size quick``: CI's check that every notebook executes on a CPU (the published pages show stored outputs);
* ``--size book --write-back``: the run whose outputs the book publishes (``make book-outputs``), written back
  into the notebooks; nothing is written for a notebook that fails.

A notebook fails on any cell error, and with ``--expect-stored`` also when a stored-results section says it found
no stored results. Without ``--write-back`` the notebooks themselves are never changed.

    python scripts/run_notebooks.py [--model M] [--size smoke] [--serve ROOT] [--expect-stored] [--write-back] NB ...
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from cachesteer_lite.tasks.data import load_rows  # this interpreter's package: the checkout's, or the wheel's

# What a notebook prints when it finds no stored results (notebooks 5 and 6 say "no stored ... yet").
NO_STORED_RESULTS = re.compile(r"no stored [\w -]+ yet")


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """Serve ``root``'s files on a free loopback port for as long as the block runs; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A file server that counts its requests instead of logging each one."""

    requests = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        type(self).requests += 1


def printed_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
            parts.append(output.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


def run(path: Path, timeout: int, expect_stored: bool, write_back: bool) -> tuple[float, str]:
    """Execute one notebook in an empty folder; return its wall time and a problem ("" when there is none).

    With ``write_back`` a notebook that ran without a problem is saved over ``path`` with its new outputs."""
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}},
                           allow_errors=False).execute()
        except Exception as error:  # a cell error: report it and go on with the next notebook
            return time.perf_counter() - started, f"{type(error).__name__}: {str(error)[-1500:]}"
    missing = NO_STORED_RESULTS.findall(printed_text(nb)) if expect_stored else []
    if write_back and not missing:
        nbformat.write(nb, path)
    return time.perf_counter() - started, f"found no stored results: {missing}" if missing else ""


def data_problem() -> str:
    """Why the notebooks could not read the task data ("" when they can): one ARC question is loaded the way the
    notebooks load them, from $CACHESTEER_DATA_DIR or else the Hugging Face hub."""
    try:
        load_rows("arc_challenge", "test", limit=1)
    except (ConnectionError, FileNotFoundError, ImportError) as error:
        return str(error)
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--model", help="CACHESTEER_MODEL for the kernels (default: the notebooks' own)")
    parser.add_argument("--size", default="smoke", choices=("smoke", "quick", "book", "full"))
    parser.add_argument("--serve", type=Path, help="serve this folder on loopback as $CACHESTEER_FILES_URL")
    parser.add_argument("--expect-stored", action="store_true", help="fail when a notebook finds no stored results")
    parser.add_argument("--write-back", action="store_true", help="save each executed notebook over its file")
    parser.add_argument("--timeout", type=int, default=900, help="seconds a cell may take")
    args = parser.parse_args()
    # The kernels inherit this environment; `python` on the PATH is this interpreter (the kernel spec calls it).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ["CACHESTEER_RUN_SIZE"] = args.size
    # Progress bars in a kernel become widgets, which a written-back notebook would keep and the pages cannot show.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.model:
        os.environ["CACHESTEER_MODEL"] = args.model
    problem = data_problem()
    if problem:  # one sentence, before any kernel starts, instead of the same traceback in every notebook
        print(f"run_notebooks: no task data: {problem}")
        return 1
    with serving(args.serve) if args.serve else nullcontext_url() as url:
        if url:
            os.environ["CACHESTEER_FILES_URL"] = url
        results = []
        for path in args.notebooks:
            seconds, problem = run(path, args.timeout, args.expect_stored, args.write_back)
            results.append((path, seconds, problem))
            print(f"{path.name} ({args.model or 'default model'}, {args.size}): {seconds:.0f} s"
                  + (f"  <-- FAILED: {problem}" if problem else ""), flush=True)
    if args.serve:
        print(f"the loopback remote answered {QuietHandler.requests} requests")
    print(f"total: {sum(seconds for _, seconds, _ in results):.0f} s")
    return 1 if any(problem for *_, problem in results) else 0


@contextmanager
def nullcontext_url() -> Iterator[str]:
    """No server: no URL."""
    yield ""


if __name__ == "__main__":
    sys.exit(main())
