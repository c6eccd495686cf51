"""Generating traces: every item asked of the teacher on a few threads, each result stored as it arrives.

:func:`generate_traces` runs requests on a few threads, retries 429, 5xx, connection errors and timeouts with
exponential backoff, and appends each result to disk as it arrives (:class:`store.TraceStore`). A run that
crashes or is stopped loses at most the requests in flight; rerunning the same call requests only the items
stored in neither file. It counts requests, tokens and (for models in :data:`client.PRICES_PER_MILLION_TOKENS`)
dollars.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion

from ..core.progress import progress_bar
from ..tasks.data import Item
from ..tasks.traces import STYLES, Trace
from .client import DEFAULT_RETRY, RetryPolicy, cost_usd, is_retryable, make_client
from .prompts import PROMPT_VERSION, STYLE_INSTRUCTIONS, build_messages, parse_response, rejection_reason
from .store import RejectedTrace, TraceStore, rejected_path

DEFAULT_TEACHER = "gpt-4o"


class TeacherError(RuntimeError):
    """A run stopped early (endpoint down, key refused, ...). Everything finished is stored: rerun to resume.

    ``report`` holds the counts of the interrupted run.
    """

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class _Cancelled(Exception):
    """A worker gave up its item because the run is stopping."""


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
    retry: RetryPolicy = DEFAULT_RETRY,
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
          progress_bar(total=len(todo), unit="item", desc=f"{run.style} traces", enabled=progress) as bar):
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
