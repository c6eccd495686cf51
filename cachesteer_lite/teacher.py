"""Chain-of-thought traces from a teacher model behind an OpenAI-compatible API (GPT-4o by default).

The paper's contrastive demonstrations use GPT-4o reasoning traces, whose generation prompt was never published.
This module regenerates such traces for any (question, gold answer) items through the official ``openai`` client:

* one prompt per reasoning style (:data:`STYLE_INSTRUCTIONS`, versioned by :data:`PROMPT_VERSION`), asking for
  short steps, one per line, and a last line "The answer is X.";
* the reply is parsed into steps and an answer and checked against the gold answer and the content checks of
  :func:`cachesteer_lite.traces.trace_problems`. Accepted traces go to the output file, rejected ones to a sibling
  file ``<stem>.rejected.jsonl`` with the reason and the raw reply, so nothing is dropped silently;
* :func:`generate_traces` runs requests on a few threads, retries 429, 5xx, connection errors and timeouts with
  exponential backoff, and appends each result to disk as it arrives (:class:`TraceStore`). A run that crashes or
  is stopped loses at most the requests in flight; rerunning the same call requests only the items stored in
  neither file. It counts requests, tokens and (for models in :data:`PRICES_PER_MILLION_TOKENS`) dollars.

Command line (endpoint from ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, or ``--api-key`` / ``--base-url``)::

    python -m cachesteer_lite.teacher --task arc_challenge --split train --limit 100 --style default \\
        --out data/traces/x.jsonl

Any OpenAI-compatible server works as the teacher, e.g. a local ``transformers serve`` (which the tests use), vLLM
or Ollama. :func:`author_traces` downloads the authors' own GPT-4o trace files for readers who are online.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion
from tqdm.auto import tqdm

from cachesteer_lite.data import Item, load_items
from cachesteer_lite.models import cache_dir
from cachesteer_lite.traces import STYLES, Trace, read_traces, trace_problems

PROMPT_VERSION = "teacher-v1"
DEFAULT_TEACHER = "gpt-4o"
REJECTED_SUFFIX = ".rejected.jsonl"

SYSTEM_PROMPT = (
    "You are a careful teacher. You write short, correct worked solutions to exam questions, "
    "in exactly the reasoning style you are asked for."
)
# What each style asks for; the openings match the markers of data/traces/SCHEMA.md so adherence can be measured.
STYLE_INSTRUCTIONS: dict[str, str] = {
    "default": (
        "Reason in plain sentences: say what the question asks, bring in the knowledge that decides it, "
        "rule out the wrong choices, and conclude with the correct one."
    ),
    "stepwise": (
        'Number every step, "Step 1: ...", "Step 2: ...", each a small move, and make the last step the conclusion.'
    ),
    "strategy_execution": (
        'Start with a line "Strategy: ..." that states your plan, carry it out in lines beginning "Execution: ..." '
        '(or "Carrying this out, ..."), and end with a line "Conclusion: ...".'
    ),
    "causal_chain": (
        "Write a chain of cause and effect in which each line follows from the one before: "
        '"Because ..., ...", "This causes ...", "As a result, ...", ending with "Therefore, ...".'
    ),
    "annotated_deduction": (
        "Write premises and inferences, each followed by a short bracketed note on where it comes from: "
        '"Fact: ... [given]", "So ... [from the fact above]", ending with the conclusion "... [conclusion]".'
    ),
    "analogical": (
        'Open with a familiar situation that works the same way ("Think of ..." or "Just like ..."), then map it '
        "back to the question step by step, and end by naming the correct choice."
    ),
}
_FORMAT = (
    "Write 3 to 6 short steps, one per line, in plain text: no title, no markdown, no blank lines. "
    'The last line must be exactly "The answer is X." where X is {answer_form}.'
)

# US dollars per million (input, output) tokens, standard API prices published by OpenAI (2025). A dated
# snapshot ("gpt-4o-2024-08-06") costs what its family costs unless listed itself. Cached-input discounts are
# ignored, so costs are upper bounds; check https://openai.com/api/pricing before budgeting with them.
PRICES_PER_MILLION_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
}

# The authors' published trace files (GitHub MaxBelitsky/cache-steering, folder local_data/, no license: never
# commit them). Their folders are arc_oai, csqa_oai, piqa_oai, gsm8k_oai and arc_<style> (paper-reference
# section 2.1); the file names inside are not known here: browse AUTHORS_TREE_URL to find them.
AUTHORS_COMMIT = "583d6c9e"
AUTHORS_URL_PATTERN = "https://raw.githubusercontent.com/MaxBelitsky/cache-steering/{commit}/local_data/{path}"
AUTHORS_TREE_URL = "https://github.com/MaxBelitsky/cache-steering/tree/{commit}/local_data"

_NO_ENDPOINT_HELP = (
    "no teacher endpoint configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an endpoint other than "
    "OpenAI, e.g. http://127.0.0.1:8000/v1 for a local `transformers serve`, vLLM or Ollama), or pass "
    "api_key=/base_url= (--api-key/--base-url on the command line). No endpoint? The traces shipped in "
    "data/traces/ are ready to use: cachesteer_lite.traces.read_traces('data/traces/arc_challenge.jsonl')."
)

_BULLET = re.compile(r"^(?:[-*\u2022]\s+|\d{1,2}[.)]\s+)")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# "The answer is B.", "Final answer: 42", "So the correct answer is (C): ...": group 'lead' is what comes before.
_ANSWER_PHRASE = re.compile(
    r"(?P<lead>.*?)\b(?:the\s+)?(?:final\s+|correct\s+|best\s+)?answer\s*(?:is\s*:?|:)\s*(?P<value>.*)$",
    re.IGNORECASE,
)
_LETTER = re.compile(r"^(?:(?i:option|choice)\s+)?[(\[\"'*]*([A-H])(?![A-Za-z])")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


class TeacherConfigError(RuntimeError):
    """No usable teacher endpoint is configured; the message says how to set one or use the shipped traces."""


class TeacherError(RuntimeError):
    """A run stopped early (endpoint down, key refused, ...). Everything finished is stored: rerun to resume.

    ``report`` holds the counts of the interrupted run.
    """

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class AuthorTracesUnavailable(RuntimeError):
    """The authors' trace file could not be downloaded (offline, or no such file at that commit)."""


class _Cancelled(Exception):
    """A worker gave up its item because the run is stopping."""


# --- prompts and parsing -------------------------------------------------------------------------------------


def build_messages(item: Item, style: str = "default") -> list[dict[str, str]]:
    """The chat messages that ask the teacher for a ``style`` trace of ``item`` (the gold answer is not shown)."""
    if style not in STYLE_INSTRUCTIONS:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    if item.choices:
        answer_form = f"the letter of the correct choice ({', '.join(item.labels)})"
    else:
        answer_form = "the final number, digits only, with no units"
    instructions = f"Solve the question below. {STYLE_INSTRUCTIONS[style]}\n{_FORMAT.format(answer_form=answer_form)}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{instructions}\n\n{item.question}"},
    ]


def _clean_line(line: str) -> str:
    """A reply line without markdown emphasis, list bullets or list numbers ("Step 1:" markers are kept)."""
    return _BULLET.sub("", line.replace("**", "").strip()).strip()


def _answer_value(value: str, numeric: bool) -> str:
    """The letter (multiple choice) or number (GSM8K) at the start of what follows "answer is"; "" if none."""
    if not numeric:
        match = _LETTER.match(value.strip())
        return match.group(1) if match else ""
    match = _NUMBER.search(value)
    if match is None:
        return ""
    try:
        number = Decimal(match.group(0).replace("$", "").replace(",", ""))
    except InvalidOperation:
        return ""
    return format(number.normalize(), "f") if number != number.to_integral() else str(int(number))


def _line_answer(line: str, numeric: bool) -> tuple[str, bool]:
    """The answer a line gives after "answer is" ("" if none), and whether the line is nothing but that answer."""
    match = _ANSWER_PHRASE.match(line)
    if match is None:
        return "", False
    answer = _answer_value(match.group("value"), numeric)
    return answer, bool(answer) and not match.group("lead").strip(" \t-:,.")


def parse_response(text: str, numeric: bool = False) -> tuple[list[str], str]:
    """Split a teacher reply into (steps, answer).

    The answer is read from the last non-empty line only, as the letter (or, with ``numeric``, the number)
    after "answer is" / "answer:"; it is "" when that line gives none. A last line that is only the answer
    ("The answer is B.") is not a step, nor is a repetition of it just before, since the contrastive builder
    appends " The answer is B." itself; a last line with reasoning before the phrase ("So the answer is B.")
    stays as the concluding step. A reply written as a single paragraph is read as one sentence per line.
    """
    lines = [cleaned for cleaned in map(_clean_line, text.splitlines()) if cleaned]
    if len(lines) == 1:
        lines = [sentence for sentence in _SENTENCE_BREAK.split(lines[0]) if sentence.strip()]
    answer = _line_answer(lines[-1], numeric)[0] if lines else ""
    while answer and lines and _line_answer(lines[-1], numeric) == (answer, True):
        lines.pop()  # the final answer line, and any repetition of it just before
    return lines, answer


def rejection_reason(item: Item, trace: Trace, finish_reason: str | None) -> str | None:
    """Why ``trace`` (parsed from a reply that ended with ``finish_reason``) cannot be kept; None to accept it.

    Each reason starts with a short code: ``refused``, ``truncated`` (cut off at max_tokens: even a final line
    may be incomplete, "1" of "18"), ``no_answer``, ``invalid_answer``, ``wrong_answer``, ``too_few_steps`` or
    ``invalid_trace`` (the other content checks of :func:`cachesteer_lite.traces.trace_problems`).
    """
    if finish_reason == "content_filter":
        return "refused: the endpoint withheld the reply (finish_reason=content_filter)"
    if finish_reason == "length":
        return "truncated: the reply was cut off at max_tokens before it ended"
    if not trace.answer:
        return 'no_answer: the last line gives no final answer ("The answer is X.")'
    if item.choices and trace.answer not in item.labels:
        return f"invalid_answer: {trace.answer!r} is not one of the choices {', '.join(item.labels)}"
    if trace.answer != item.answer:
        return f"wrong_answer: the reply answers {trace.answer!r}, the gold answer is {item.answer!r}"
    if len(trace.steps) < 2:
        return f"too_few_steps: {len(trace.steps)} reasoning step(s) before the answer, at least 2 needed"
    problems = trace_problems(trace)
    return f"invalid_trace: {'; '.join(problems)}" if problems else None


# --- the on-disk store ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectedTrace:
    """A reply that was not kept: the parsed trace (``answer`` "" when none was found), why, and the raw reply."""

    trace: Trace
    reason: str
    raw_response: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        """The key of the trace, as in the accepted file."""
        return self.trace.key

    def to_dict(self) -> dict:
        """The trace's fields followed by ``reason`` and ``raw_response``."""
        return {**self.trace.to_dict(), "reason": self.reason, "raw_response": self.raw_response}

    @classmethod
    def from_dict(cls, record: object) -> RejectedTrace:
        """Parse a line of a rejected file, raising ValueError when it breaks the schema."""
        if not isinstance(record, dict):
            raise ValueError("expected a JSON object")
        fields = dict(record)
        extra = {name: fields.pop(name, None) for name in ("reason", "raw_response")}
        if not all(isinstance(value, str) for value in extra.values()):
            raise ValueError("fields 'reason' and 'raw_response' must be strings")
        return cls(Trace.from_dict(fields), extra["reason"], extra["raw_response"])


def rejected_path(out: str | Path) -> Path:
    """Where the rejected traces of output file ``out`` go: ``x.jsonl`` -> ``x.rejected.jsonl``."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + REJECTED_SUFFIX)


def read_rejected(path: str | Path) -> list[RejectedTrace]:
    """All records of a rejected-traces file, in file order (an absent file has none)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(RejectedTrace.from_dict(json.loads(line)))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}, line {number}: {error}") from None
    return records


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that lacks its newline: a write interrupted by a crash. Its item is requested again."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        warnings.warn(f"{path}: dropping an incomplete last line ({len(data) - keep} bytes) left by an "
                      "interrupted run; its item will be requested again", stacklevel=3)
        with path.open("r+b") as handle:
            handle.truncate(keep)


def _style_order(key: tuple[str, str, int, str]) -> tuple[str, str, int, int]:
    """Sort order of a file: task, split, style (in STYLES order), then item index."""
    task, split, index, style = key
    return task, split, STYLES.index(style), index


class TraceStore:
    """The accepted file ``path`` and its rejected sibling, appended line by line under a lock.

    Opening the store reads the keys (task, split, index, style) already in either file; :meth:`add` refuses
    a key twice, so a resumed run can neither lose nor duplicate an item.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rejected_path = rejected_path(self.path)
        self._lock = threading.Lock()
        for file in (self.path, self.rejected_path):
            _drop_partial_line(file)
        accepted = read_traces(self.path) if self.path.is_file() and self.path.stat().st_size else []
        self._keys = {trace.key for trace in accepted} | {record.key for record in read_rejected(self.rejected_path)}

    def __contains__(self, key: tuple[str, str, int, str]) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, record: Trace | RejectedTrace) -> None:
        """Append ``record`` to its file, flushed and synced before returning."""
        path = self.rejected_path if isinstance(record, RejectedTrace) else self.path
        line = json.dumps(record.to_dict(), ensure_ascii=False) + "\n"
        with self._lock:
            if record.key in self._keys:
                raise ValueError(f"{record.key} is already stored in {self.path} or {self.rejected_path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._keys.add(record.key)

    def sort(self) -> None:
        """Rewrite both files in (task, split, style, index) order, so a finished file does not depend on the
        order in which concurrent replies arrived. Each file is replaced atomically."""
        with self._lock:
            for path in (self.path, self.rejected_path):
                if not path.is_file():
                    continue
                records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
                records.sort(key=lambda r: _style_order((r["task"], r["split"], r["index"], r["style"])))
                staging = path.with_name(path.name + ".tmp")
                staging.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                   encoding="utf-8")
                os.replace(staging, path)


# --- client, retries and cost --------------------------------------------------------------------------------


def make_client(base_url: str | None = None, api_key: str | None = None) -> OpenAI:
    """An ``openai`` client for the arguments, else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.

    A base URL without a key is allowed (local servers ignore the key); neither raises TeacherConfigError.
    """
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if base_url is None and api_key is None:
        raise TeacherConfigError(_NO_ENDPOINT_HELP)
    return OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0)


def price_per_million_tokens(model: str) -> tuple[float, float] | None:
    """(input, output) dollars per million tokens of ``model`` or its dated snapshot; None when unknown."""
    if model in PRICES_PER_MILLION_TOKENS:
        return PRICES_PER_MILLION_TOKENS[model]
    family = re.fullmatch(r"(.+)-\d{4}-\d{2}-\d{2}", model)
    return PRICES_PER_MILLION_TOKENS.get(family.group(1)) if family else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What the tokens cost at :data:`PRICES_PER_MILLION_TOKENS`; None for a model without a price."""
    price = price_per_million_tokens(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def is_retryable(error: Exception) -> bool:
    """Connection errors, timeouts, 408, 409, 429 and 5xx are worth retrying; a 429 for an exhausted quota,
    a refused key (401), an unknown model (404) or a bad request (400) are not."""
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(error, openai.APIStatusError):
        if getattr(error, "code", None) == "insufficient_quota":
            return False
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about ``initial_delay * 2**(n-1)`` seconds (at most
    ``max_delay``), or what the server's Retry-After header asks, before attempt n+1."""

    max_attempts: int = 6
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, error: Exception) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) that raised ``error``."""
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        try:
            return min(float(retry_after), self.max_delay)
        except (TypeError, ValueError):
            base = min(self.initial_delay * 2 ** (attempt - 1), self.max_delay)
            return base * (0.5 + random.random() / 2)


# --- the runner ----------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What one :func:`generate_traces` call did. ``requests`` counts HTTP requests, retries included;
    ``reasons`` counts rejections by code (``wrong_answer``, ...)."""

    out: Path
    model: str
    items: int = 0
    skipped: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        """Dollars spent by this run; None when the model has no known price."""
        return cost_usd(self.model, self.prompt_tokens, self.completion_tokens)

    @property
    def missing(self) -> int:
        """Items neither stored before nor during this run (non-zero only after a stopped run)."""
        return self.items - self.skipped - self.accepted - self.rejected

    def summary(self) -> str:
        """A few lines for the command line."""
        cost = "unknown (no price for this model)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        reasons = ", ".join(f"{code} {count}" for code, count in sorted(self.reasons.items())) or "none"
        return (f"{self.items} items: {self.skipped} already stored, {self.accepted} accepted, "
                f"{self.rejected} rejected ({reasons}), {self.missing} missing\n"
                f"{self.requests} requests in {self.seconds:.1f} s; tokens {self.prompt_tokens} in + "
                f"{self.completion_tokens} out; cost {cost}\n"
                f"accepted: {self.out}\nrejected: {rejected_path(self.out)}")


class _Run:
    """One generation run: worker threads ask the teacher and store results; counts are kept under a lock."""

    def __init__(self, client: OpenAI, store: TraceStore, report: RunReport, style: str, max_tokens: int,
                 temperature: float, retry: RetryPolicy) -> None:
        self.client, self.store, self.report, self.style = client, store, report, style
        self.max_tokens, self.temperature, self.retry = max_tokens, temperature, retry
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _ask(self, item: Item) -> ChatCompletion:
        """One chat completion for ``item``; an error that is not retryable, or still there after the policy's
        last attempt, propagates (and stops the run)."""
        attempt = 0
        while True:
            attempt += 1
            if self.stop.is_set():
                raise _Cancelled
            with self._lock:
                self.report.requests += 1
            try:
                return self.client.chat.completions.create(
                    model=self.report.model, messages=build_messages(item, self.style),
                    temperature=self.temperature, max_tokens=self.max_tokens,
                )
            except openai.APIError as error:
                if not is_retryable(error) or attempt >= self.retry.max_attempts:
                    raise
                if self.stop.wait(self.retry.delay(attempt, error)):
                    raise _Cancelled from error

    def solve(self, item: Item) -> Trace | RejectedTrace:
        """Ask for ``item``, judge the reply and store the result as soon as it is known."""
        response = self._ask(item)
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice else None) or ""
        steps, answer = parse_response(text, numeric=not item.choices)
        usage = None
        if response.usage is not None:
            usage = response.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
        provenance = {"teacher": response.model or self.report.model, "prompt_version": PROMPT_VERSION,
                      "date": datetime.now(timezone.utc).date().isoformat(), "usage": usage}
        trace = Trace(item.task, item.split, item.index, item.source_id, item.question, steps, answer,
                      self.style, provenance)
        reason = rejection_reason(item, trace, choice.finish_reason if choice else None)
        record: Trace | RejectedTrace = trace if reason is None else RejectedTrace(trace, reason, text)
        self.store.add(record)
        with self._lock:
            if usage:
                self.report.prompt_tokens += usage.get("prompt_tokens") or 0
                self.report.completion_tokens += usage.get("completion_tokens") or 0
            if reason is None:
                self.report.accepted += 1
            else:
                self.report.rejected += 1
                code = reason.split(":", 1)[0]
                self.report.reasons[code] = self.report.reasons.get(code, 0) + 1
        return record

    def postfix(self) -> dict[str, object]:
        """Running counts for the progress bar."""
        with self._lock:
            cost = self.report.cost_usd
            return {"ok": self.report.accepted, "rejected": self.report.rejected, "requests": self.report.requests,
                    "tokens": self.report.prompt_tokens + self.report.completion_tokens,
                    **({"cost": f"${cost:.3f}"} if cost is not None else {})}


def _describe(error: BaseException) -> str:
    """A one-line description of an API error for the stop message."""
    if isinstance(error, openai.APIStatusError):
        return f"{type(error).__name__} (HTTP {error.status_code}): {error.message}"
    return f"{type(error).__name__}: {error}"


def generate_traces(
    items: Sequence[Item],
    out: str | Path,
    *,
    style: str = "default",
    model: str = DEFAULT_TEACHER,
    client: OpenAI | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    timeout: float = 120.0,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> RunReport:
    """Ask the teacher for a ``style`` trace of every item not yet stored in ``out`` or its rejected sibling.

    ``client`` (any ``openai.OpenAI``) wins over ``base_url``/``api_key``, which win over the environment; no
    client is built (and no endpoint is needed) when every item is already stored. At most ``concurrency``
    requests are in flight; each result is appended to disk as it arrives. When a request fails for good
    (after ``retry`` for transient errors, at once for others), no new item is started, the requests in flight
    finish and are stored, and TeacherError is raised: calling again with the same arguments resumes. A run
    that finishes sorts both files by (task, split, style, index).
    """
    if style not in STYLE_INSTRUCTIONS:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    started = time.monotonic()
    store = TraceStore(out)
    unique = list({(item.task, item.split, item.index, style): item for item in items}.items())
    todo = [item for key, item in unique if key not in store]
    report = RunReport(Path(out), model, items=len(unique), skipped=len(unique) - len(todo))
    if todo:
        client = (client or make_client(base_url, api_key)).with_options(max_retries=0, timeout=timeout)
        run = _Run(client, store, report, style, max_tokens, temperature, retry)
        failure = _run_all(run, todo, concurrency, progress)
        report.seconds = time.monotonic() - started
        if failure is not None:
            raise TeacherError(
                f"stopped early: {_describe(failure)}. {report.accepted + report.rejected} results of this run "
                f"are stored in {store.path} and {store.rejected_path}; {report.missing} items are missing. "
                "Run the same command again to resume: only the missing items are requested.", report
            ) from failure
    store.sort()
    report.seconds = time.monotonic() - started
    return report


def _run_all(run: _Run, todo: list[Item], concurrency: int, progress: bool) -> BaseException | None:
    """Solve ``todo`` with at most ``concurrency`` requests in flight, in item order; the first error that is
    not a cancellation stops the run and is returned (None when everything finished)."""
    failure: BaseException | None = None
    pending: set[Future] = set()
    queue = iter(todo)
    with (ThreadPoolExecutor(max_workers=concurrency) as pool,
          tqdm(total=len(todo), unit="item", desc=f"{run.style} traces", disable=not progress) as bar):
        try:
            while True:
                while failure is None and len(pending) < concurrency and (item := next(queue, None)) is not None:
                    pending.add(pool.submit(run.solve, item))
                if not pending:
                    return failure
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    error = future.exception()
                    if error is None:
                        bar.update()
                    elif not isinstance(error, _Cancelled) and failure is None:
                        failure = error
                        run.stop.set()
                bar.set_postfix(run.postfix(), refresh=False)
        except BaseException:  # Ctrl-C: let the requests in flight finish and be stored, then stop.
            run.stop.set()
            raise


# --- the authors' published traces ---------------------------------------------------------------------------


def author_traces(
    path: str, *, commit: str = AUTHORS_COMMIT, url_pattern: str = AUTHORS_URL_PATTERN, timeout: float = 30.0
) -> list[dict]:
    """The records of one of the authors' GPT-4o trace files, downloaded once and cached.

    ``path`` is relative to their ``local_data/`` folder, e.g. ``"arc_oai/<file>.json"`` (list the folders at
    :data:`AUTHORS_TREE_URL`). ``url_pattern`` is formatted with ``commit`` and ``path``; the default reads
    GitHub's raw files, and any mirror with the same layout works. The file is cached under
    ``$CACHESTEER_CACHE_DIR/author_traces/<commit>/`` (default ``~/.cache/cachesteer_lite``), never in the
    project: the traces carry no license. Records keep the authors' fields (``query`` or ``question``,
    ``steps``, ``solution``; paper-reference section 2.1). Offline, raises AuthorTracesUnavailable.
    """
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"path must be relative to local_data/, got {path!r}")
    cached = cache_dir() / "author_traces" / commit / relative
    if not cached.is_file():
        url = url_pattern.format(commit=commit, path=relative.as_posix())
        _download(url, cached, timeout, listing=AUTHORS_TREE_URL.format(commit=commit))
    return _parse_records(cached)


def _download(url: str, target: Path, timeout: float, listing: str) -> None:
    """Fetch ``url`` into ``target`` through a temporary file, so a failed download leaves nothing behind;
    ``listing`` is where a reader can look up the right file name after a 404."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        raise AuthorTracesUnavailable(
            f"{url}: HTTP {error.code}. File names under local_data/ are listed at {listing}"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise AuthorTracesUnavailable(
            f"could not download {url} ({getattr(error, 'reason', error)}): the authors' traces need internet "
            "access the first time, and are not shipped with this project (they carry no license). Offline, "
            "use the traces in data/traces/ or generate your own with `python -m cachesteer_lite.teacher`."
        ) from error
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".part")
    staging.write_bytes(data)
    os.replace(staging, target)


def _parse_records(path: Path) -> list[dict]:
    """A JSON array of objects, or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    records = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(record, dict) for record in records):
        raise ValueError(f"{path}: expected JSON objects (a JSON array or JSON Lines)")
    return records


# --- command line --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Generate traces for the first ``--limit`` items of a task split; returns 0 when nothing is missing."""
    parser = argparse.ArgumentParser(prog="python -m cachesteer_lite.teacher", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="arc_challenge, csqa, piqa or gsm8k")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None, help="the first N items of the split (default: all)")
    parser.add_argument("--style", default="default", choices=STYLES)
    parser.add_argument("--out", required=True, type=Path,
                        help=f"accepted traces (JSONL); rejected ones go beside it as <stem>{REJECTED_SUFFIX}")
    parser.add_argument("--model", default=DEFAULT_TEACHER)
    parser.add_argument("--base-url", default=None, help="default: $OPENAI_BASE_URL, else OpenAI")
    parser.add_argument("--api-key", default=None, help="default: $OPENAI_API_KEY (prefer the variable)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--max-attempts", type=int, default=RetryPolicy.max_attempts)
    parser.add_argument("--no-progress", action="store_true")
    arguments = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
