"""The one home for the book's files: the checkout's own files, or verified downloads of the pinned revision.

The download path is exercised for real: the checkout is served by an HTTP server on loopback, standing in for
the repository, and the package is made to believe it is installed (no checkout).
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachesteer_lite import files
from cachesteer_lite.tasks.contrastive import default_traces_path

from conftest import REPO, serving


@pytest.fixture()
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The package as a pip install sees it: no checkout, an empty user cache, the repository on loopback."""
    served = tmp_path / "remote"
    (served / "data" / "traces").mkdir(parents=True)
    for name in ("data/paper_results.json", "data/traces/piqa.jsonl"):
        (served / name).write_bytes((REPO / name).read_bytes())
    monkeypatch.setattr(files, "checkout", lambda: None)
    monkeypatch.setenv("CACHESTEER_CACHE_DIR", str(tmp_path / "cache"))
    files._verified_download.cache_clear()
    with serving(served) as url:
        monkeypatch.setenv(files.FILES_URL_ENV, url)
        yield served
    files._verified_download.cache_clear()


def test_a_checkout_reads_its_own_files() -> None:
    assert files.checkout() == REPO
    assert files.book_file("data/traces/piqa.jsonl") == REPO / "data" / "traces" / "piqa.jsonl"
    assert default_traces_path("piqa") == REPO / "data" / "traces" / "piqa.jsonl"
    assert files.display_path(REPO / "data" / "traces" / "piqa.jsonl") == "data/traces/piqa.jsonl"
    with pytest.raises(FileNotFoundError, match="not found in this checkout"):
        files.book_file("data/traces/none.jsonl")
    for bad in ("/etc/passwd", "../secrets.json", ""):
        with pytest.raises(ValueError, match="relative to the repository"):
            files.book_file(bad)


def test_the_manifest_lists_every_book_file_with_its_checksum() -> None:
    """Every file under data/ that git tracks, with the sha256 of the checkout's copy: pin again after changing
    them (python -m cachesteer_lite files pin)."""
    assert files.manifest()["files"] == files.current_files(REPO)


def test_the_pinned_revision_holds_exactly_those_files() -> None:
    """What a pip install downloads from the repository at the pinned revision is what the manifest expects."""
    git = functools.partial(subprocess.run, cwd=REPO, capture_output=True, text=True)
    if git(["git", "rev-parse", "--is-shallow-repository"]).stdout.strip() != "false":
        pytest.skip("a shallow clone has no history to look the pinned revision up in")
    revision = files.manifest()["revision"]
    listed = git(["git", "ls-tree", "-r", revision, "--", files.SHIPPED_FOLDER], check=True).stdout
    pinned = {line.split("\t")[1]: line.split()[2] for line in listed.splitlines()}
    here = git(["git", "ls-files", "-s", "--", files.SHIPPED_FOLDER], check=True).stdout
    current = {line.split("\t")[1]: line.split()[1] for line in here.splitlines()}
    assert pinned == current, "the data changed since the pin: python -m cachesteer_lite files pin, then commit"


def test_an_install_downloads_each_file_once_and_checks_it(installed: Path) -> None:
    path = files.book_file("data/traces/piqa.jsonl")
    assert path.is_file() and path.read_bytes() == (REPO / "data" / "traces" / "piqa.jsonl").read_bytes()
    assert path.is_relative_to(files.downloads_dir())
    assert files.display_path(path) == "data/traces/piqa.jsonl"
    (installed / "data" / "traces" / "piqa.jsonl").unlink()  # the remote is gone: the cached copy serves
    files._verified_download.cache_clear()
    assert files.book_file("data/traces/piqa.jsonl") == path
    with pytest.raises(FileNotFoundError, match="not one of the book's files"):
        files.book_file("data/traces/none.jsonl")


def test_a_changed_or_missing_remote_file_is_refused_and_nothing_is_kept(installed: Path) -> None:
    (installed / "data" / "paper_results.json").write_text("{}")  # not what the package was pinned with
    with pytest.raises(files.BookFileError, match="has sha256 .* expects"):
        files.book_file("data/paper_results.json")
    (installed / "data" / "traces" / "piqa.jsonl").unlink()
    with pytest.raises(files.BookFileError, match="could not download .*CACHESTEER_FILES_URL"):
        files.book_file("data/traces/piqa.jsonl")
    assert not any(path.is_file() for path in files.downloads_dir().rglob("*"))


def test_a_folder_is_fetched_by_pattern(installed: Path) -> None:
    folder = files.book_folder("data/traces", patterns=("piqa*",))
    assert sorted(p.name for p in folder.iterdir()) == ["piqa.jsonl"]


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_every_stored_json_file_is_strict_json() -> None:
    """NaN and Infinity are not JSON: strict parsers reject them, so no file the project writes may hold them
    (every writer passes allow_nan=False)."""
    checked = 0
    for name in files.current_files(REPO):
        path = REPO / name
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)
            checked += 1
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                json.loads(line, parse_constant=_refuse)
            checked += 1
    assert checked > 300
