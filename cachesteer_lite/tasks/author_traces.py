"""The authors' GPT-4o reasoning traces, downloaded at run time for readers who are online (never shipped).

Belitsky et al. built the contrastive pairs of their best configurations from GPT-4o traces of the first training
items, in Hugging Face order, kept in their repository as ``local_data/<task>_oai/*.json`` (paper-reference
section 2.1; GSM8K's best rows are the ``gsm8k-oai`` ones). They published the files without a license, so this
project never copies them: :func:`author_traces_file` lists the task's folder through GitHub's contents API at the
authors' commit, downloads its JSON files once into the user cache, and converts the records into this project's
trace schema (``data/traces/SCHEMA.md``), matched to the training items by position. ``--traces`` and
:func:`~cachesteer_lite.tasks.contrastive.build_contrastive_set` then read them like the shipped traces.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
from pathlib import Path
from typing import Any

from ..core.models import cache_dir
from ..files import fetch, store
from .data import Item, load_items
from .task import get_task
from .traces import Trace

AUTHORS_REPOSITORY = "MaxBelitsky/cache-steering"
AUTHORS_COMMIT = "583d6c9e"  # the commit that added local_data/ (NOTES.md section 3)
# {repository}, {folder} and {commit} are filled in. $CACHESTEER_AUTHOR_TRACES_URL may name a mirror that answers
# in GitHub's listing format (the tests serve one on loopback).
LISTING_URL = "https://api.github.com/repos/{repository}/contents/local_data/{folder}?ref={commit}"
LISTING_URL_ENV = "CACHESTEER_AUTHOR_TRACES_URL"
FOLDERS: dict[str, str] = {"arc_challenge": "arc_oai", "csqa": "csqa_oai", "piqa": "piqa_oai", "gsm8k": "gsm8k_oai"}
PROVENANCE = {"teacher": "gpt-4o (the paper's authors)", "prompt_version": f"{AUTHORS_REPOSITORY}@{AUTHORS_COMMIT}",
              "date": "2025", "usage": None}


class AuthorTracesUnavailable(RuntimeError):
    """The authors' traces could not be listed or downloaded; the message says what to use instead."""


def _get(url: str) -> bytes:
    """The bytes at ``url``, or AuthorTracesUnavailable saying why and what the reader can do offline."""
    try:
        return fetch(url)
    except (urllib.error.URLError, OSError) as error:
        raise AuthorTracesUnavailable(
            f"could not download {url} ({getattr(error, 'reason', error)}): the authors' GPT-4o traces are fetched "
            "from their repository at run time and need internet access the first time. Offline, use the shipped "
            "traces (data/traces/, the default) or generate your own (notebook 2)"
        ) from error


def download_folder(task: str) -> list[Path]:
    """The authors' JSON files for ``task``, downloaded once into the user cache (in name order, as the authors'
    loader globbed them)."""
    folder = FOLDERS[get_task(task).name]
    target = cache_dir() / "author_traces" / AUTHORS_COMMIT / folder
    listing = target / "listing.json"
    if not listing.is_file():
        pattern = os.environ.get(LISTING_URL_ENV) or LISTING_URL
        url = pattern.format(repository=AUTHORS_REPOSITORY, folder=folder, commit=AUTHORS_COMMIT)
        store(listing, _get(url))
    entries = sorted(json.loads(listing.read_text(encoding="utf-8")), key=lambda entry: entry["name"])
    paths = []
    for entry in entries:
        if entry.get("type") == "file" and entry["name"].endswith(".json"):
            path = target / entry["name"]
            if not path.is_file():
                store(path, _get(entry["download_url"]))
            paths.append(path)
    if not paths:
        raise AuthorTracesUnavailable(f"the authors' folder local_data/{folder} lists no JSON file")
    return paths


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of one of the authors' files: a JSON array of objects, one object, or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    records = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(record, dict) and "steps" in record and "solution" in record for record in records):
        raise ValueError(f"{path}: expected the authors' records (objects with 'steps' and 'solution')")
    return records


def _words(text: str) -> str:
    """Lower-case words, single-spaced: what two formattings of one question share."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def to_trace(record: dict[str, Any], item: Item) -> Trace:
    """One authors' record as a trace of ``item``, the training item at the same position; ValueError when the
    record asks another question (the files are documented to follow the training split's order)."""
    asked = str(record.get("query") or record.get("question") or "")
    stem = item.question.split("\n")[0]
    if _words(stem) not in _words(asked):
        raise ValueError(f"the authors' record {item.index} asks {asked[:80]!r}, not {item.task} train item "
                         f"{item.index} ({stem[:80]!r}): the file does not follow the training split's order")
    steps = record["steps"] if isinstance(record["steps"], list) else [str(record["steps"])]
    answer = str(record["solution"]).replace(",", "").strip()
    return Trace(item.task, "train", item.index, item.source_id, item.question, [str(s) for s in steps],
                 answer, "default", dict(PROVENANCE))


def author_traces_file(task: str) -> Path:
    """A trace file (this project's schema) holding the authors' GPT-4o traces of ``task``, converted once and
    cached; pass it as ``traces`` (``--traces``) to build the paper's contrastive pairs."""
    name = get_task(task).name
    converted = cache_dir() / "author_traces" / AUTHORS_COMMIT / f"{name}.jsonl"
    if converted.is_file():
        return converted
    records = [record for path in download_folder(name) for record in read_records(path)]
    items = load_items(name, "train", limit=len(records))
    traces = [to_trace(record, item) for record, item in zip(records, items, strict=True)]
    lines = "".join(json.dumps(trace.to_dict(), ensure_ascii=False) + "\n" for trace in traces)
    return store(converted, lines.encode("utf-8"))
