"""The one home for the book's files: traces, the paper's numbers and stored results, wherever the code runs.

The notebooks and the library read files that the project itself produced: the reasoning traces
(``data/traces/``), the paper's reference numbers (``data/paper_results.json``) and the stored runs
(``data/results/``). :func:`book_file` returns the local path of one of them:

* in a checkout of the repository, the file where it lies (so new runs written there are read at once);
* after a pip install (Colab), a copy downloaded once from :data:`REPOSITORY` at the pinned revision into the user
  cache, its sha256 checked against the manifest shipped inside the package (the pattern of d2l's ``DATA_HUB``).

The repository's URL and the branch readers install from are set here and nowhere else: the notebooks' install
cells and Colab badges, the book's buttons (``_config.yml``) and the package's homepage are written from them by
``python -m cachesteer_lite pages``. The data files' revision and checksums are written by
``python -m cachesteer_lite files pin``, which records the current commit of a clean checkout. A fork sets
:data:`REPOSITORY` to its own URL, runs both commands and commits; ``$CACHESTEER_FILES_URL`` points the downloads
at a mirror with the repository's layout (the tests serve the checkout on loopback this way).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath

from .core.models import cache_dir

REPOSITORY = "https://github.com/cachesteer-lite/cachesteer-lite"
BRANCH = "main"  # what readers install and open on Colab; data files are pinned to a commit instead
FILES_URL_ENV = "CACHESTEER_FILES_URL"
MANIFEST = Path(__file__).with_name("book_files.json")
SHIPPED_FOLDER = "data"  # every file under it is one of the book's files
DOWNLOAD_TIMEOUT_S = 60.0


def repository_name() -> str:
    """``owner/name`` of :data:`REPOSITORY`, as GitHub and Colab address it."""
    return REPOSITORY.removeprefix("https://github.com/").strip("/")


def colab_url(notebook: str) -> str:
    """Where the repository file ``notebook`` (e.g. ``notebooks/01_kv_cache_internals.ipynb``) opens on Colab."""
    return f"https://colab.research.google.com/github/{repository_name()}/blob/{BRANCH}/{_relative(notebook)}"


def pip_requirement(extras: str = "") -> str:
    """The pip requirement that installs this package from :data:`REPOSITORY` at :data:`BRANCH`, with ``extras``
    such as ``"notebooks,teacher"``."""
    return f"cachesteer-lite{f'[{extras}]' if extras else ''} @ git+{REPOSITORY}@{BRANCH}"


class BookFileError(RuntimeError):
    """A book file could not be found, downloaded or verified; the message says what to do."""


def checkout() -> Path | None:
    """The repository this package was imported from, or None for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "_toc.yml").is_file() and (root / SHIPPED_FOLDER).is_dir() else None


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The pinned revision and the sha256 of every book file: ``{"revision": ..., "files": {path: sha256}}``."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def files_url() -> str:
    """Where the book's files are downloaded from: the mirror in ``$CACHESTEER_FILES_URL``, else the repository's
    raw files at the pinned revision."""
    return os.environ.get(FILES_URL_ENV) or f"{REPOSITORY}/raw/{manifest()['revision']}"


def _relative(path: str | PurePosixPath) -> str:
    """``path`` as a clean repository-relative name, refusing absolute paths and ``..``."""
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"book files are named relative to the repository, like 'data/traces/piqa.jsonl'; "
                         f"got {str(path)!r}")
    return relative.as_posix()


def sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def downloads_dir() -> Path:
    """The user-cache folder holding the downloaded files of the pinned revision."""
    return cache_dir() / "book_files" / manifest()["revision"]


def book_file(path: str | PurePosixPath) -> Path:
    """The local path of the book file ``path`` (relative to the repository, e.g. ``data/paper_results.json``):
    the checkout's own file, or a verified download (see the module docstring)."""
    name = _relative(path)
    root = checkout()
    if root is not None:
        local = root / name
        if not local.is_file():
            raise FileNotFoundError(f"{local} not found in this checkout")
        return local
    expected = manifest()["files"].get(name)
    if expected is None:
        raise FileNotFoundError(f"{name} is not one of the book's files at revision {manifest()['revision']} "
                                f"(they are listed in {MANIFEST})")
    return _verified_download(name, expected)


def book_folder(folder: str, patterns: tuple[str, ...] = ("*",)) -> Path:
    """The local path of a folder of book files, with every file in it whose name matches one of ``patterns``
    present (downloaded where needed)."""
    name = _relative(folder)
    root = checkout()
    if root is not None:
        return root / name
    for path in manifest()["files"]:
        if path.startswith(name + "/") and any(fnmatch.fnmatch(PurePosixPath(path).name, p) for p in patterns):
            book_file(path)
    return downloads_dir() / name


@cache
def _verified_download(name: str, expected: str) -> Path:
    """The downloaded copy of ``name``, fetched if it is missing and checked against ``expected`` once per run."""
    target = downloads_dir() / name
    if target.is_file() and sha256(target) == expected:
        return target
    url = f"{files_url()}/{name}"
    try:
        data = fetch(url)
    except (urllib.error.URLError, OSError) as error:
        raise BookFileError(
            f"could not download {name} from {url} ({getattr(error, 'reason', error)}). The book's files come from "
            f"the repository the first time they are used; offline, clone {REPOSITORY} and run from the clone, or "
            f"set ${FILES_URL_ENV} to a copy of its files"
        ) from error
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise BookFileError(f"{url} has sha256 {found}, but this version of the package expects {expected}: the "
                            "file changed upstream; install the package version that matches it")
    return store(target, data)


def fetch(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The bytes at ``url``; urllib's errors pass through, for the caller to say what the reader can do."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def store(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a staging file: an interrupted download leaves no file behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.{os.getpid()}.part")  # processes of one run may store the same file
    staging.write_bytes(data)
    os.replace(staging, target)
    return target


def display_path(path: str | Path) -> str:
    """``path`` as a repository-relative name when it is a book file (checkout or download), else as given:
    what results record, so that they name no machine."""
    resolved = Path(path).resolve()
    for root in filter(None, (checkout(), downloads_dir())):
        if resolved.is_relative_to(root.resolve()):
            return resolved.relative_to(root.resolve()).as_posix()
    return str(path)


def current_files(root: Path) -> dict[str, str]:
    """The sha256 of every file git tracks under ``root/data``, by repository-relative name."""
    listed = subprocess.run(["git", "ls-files", "-z", SHIPPED_FOLDER], cwd=root, check=True, capture_output=True)
    names = sorted(name for name in listed.stdout.decode().split("\0") if name)
    return {name: sha256(root / name) for name in names}


def pin(root: Path) -> dict:
    """Record the current commit of a checkout whose book files are all committed, with their checksums."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--", SHIPPED_FOLDER], cwd=root, check=True,
                           capture_output=True, text=True).stdout
    if dirty.strip():
        raise BookFileError(f"commit the changes under {SHIPPED_FOLDER}/ first: the pinned revision must hold "
                            f"exactly the files the manifest lists:\n{dirty}")
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                              text=True).stdout.strip()
    pinned = {"revision": revision, "files": current_files(root)}
    MANIFEST.write_text(json.dumps(pinned, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    manifest.cache_clear()
    return pinned


def run_pin(args: argparse.Namespace) -> int:
    """Pin the book's files at the current commit of this checkout (run after committing changes under data/)."""
    root = checkout()
    if root is None:
        raise SystemExit("pinning reads the files of a checkout of the repository; run it from one")
    pinned = pin(root)
    print(f"{MANIFEST.name}: {len(pinned['files'])} files at revision {pinned['revision']}; commit it")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``files pin`` to the command line."""
    parser = commands.add_parser("files", help="the book's files (traces, the paper's numbers, stored results)")
    actions = parser.add_subparsers(dest="files_command", required=True)
    actions.add_parser("pin", help=run_pin.__doc__, description=run_pin.__doc__).set_defaults(handler=run_pin)
