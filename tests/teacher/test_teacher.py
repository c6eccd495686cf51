"""The trace generator, end to end through the official ``openai`` client against a real server.

The server is ``transformers serve`` with the embedded SmolLM2-135M-Instruct on a free loopback port (greedy,
so its replies are deterministic). The model is too small to reason: the items below were picked by running it
with PROMPT_VERSION "teacher-v1" so that one reply of each kind comes back (accepted, wrong answer, no answer,
too few steps), and the tests name the exact outcome of each item. If the prompt changes, re-pick them.

Error statuses that ``transformers serve`` never sends (429, 5xx, 401, a timeout) come from a small scripted
HTTP endpoint, still through the real client and real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from cachesteer_lite.__main__ import main as cachesteer_main
from cachesteer_lite.tasks.data import Item, load_items
from cachesteer_lite.tasks.traces import STYLES, Trace, read_traces, validate_traces
from cachesteer_lite.teacher.client import (
    RetryPolicy,
    TeacherConfigError,
    cost_usd,
    is_retryable,
    price_per_million_tokens,
)
from cachesteer_lite.teacher.generate import TeacherError, generate_traces
from cachesteer_lite.teacher.prompts import (
    PROMPT_VERSION,
    STYLE_INSTRUCTIONS,
    build_messages,
    parse_response,
    rejection_reason,
)
from cachesteer_lite.teacher.serve import LocalServer
from cachesteer_lite.teacher.store import RejectedTrace, TraceStore, read_rejected, rejected_path


def main(arguments: list[str]) -> int:
    """The teacher's command line."""
    return cachesteer_main(["teacher", *arguments])

SERVER_START_TIMEOUT_S = 180
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A running ``transformers serve`` with the embedded SmolLM2-135M-Instruct, killed at teardown."""
    local = LocalServer("smollm2-135m-instruct", log_dir=tmp_path_factory.mktemp("serve"))
    local.start(timeout=SERVER_START_TIMEOUT_S)
    yield local
    local.stop()


def counting_client(base_url: str) -> tuple[openai.OpenAI, list[str]]:
    """An ``openai`` client and the list it fills with the user message of every HTTP request it sends."""
    sent: list[str] = []

    def record(request) -> None:
        sent.append(json.loads(request.content)["messages"][-1]["content"])

    http_client = openai.DefaultHttpxClient(event_hooks={"request": [record]})
    return openai.OpenAI(base_url=base_url, api_key="unused", http_client=http_client), sent


def _stored_keys(out: Path) -> list[tuple]:
    """Keys of every line of ``out`` and its rejected sibling (duplicates kept, so they can be detected)."""
    accepted = read_traces(out) if out.is_file() else []
    return [trace.key for trace in accepted] + [record.key for record in read_rejected(rejected_path(out))]


def _line_count(out: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in (out, rejected_path(out)) if path.is_file())


def _piqa(*indices: int) -> list[Item]:
    items = load_items("piqa", "train", max(indices) + 1)
    return [items[index] for index in indices]


@pytest.fixture(autouse=True)
def _no_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests name their endpoint; a developer's OPENAI_* variables must not leak into them."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# --- against transformers serve --------------------------------------------------------------------------------


@pytest.mark.slow
def test_generation_end_to_end(server: LocalServer, tmp_path: Path) -> None:
    server.ensure_running()
    items = _piqa(0, 1, 4, 12) + load_items("gsm8k", "train", 2)[1:]
    out = tmp_path / "traces.jsonl"
    client, sent = counting_client(server.base_url)
    report = generate_traces(items, out, model=server.model, client=client, max_tokens=60, concurrency=2,
                             progress=False)

    assert (report.items, report.skipped, report.accepted, report.rejected, report.missing) == (5, 0, 1, 4, 0)
    assert report.requests == len(sent) == 5
    assert sorted(sent) == sorted(build_messages(item)[-1]["content"] for item in items)
    accepted = read_traces(out)
    assert [trace.key for trace in accepted] == [("piqa", "train", 12, "default")]
    assert validate_traces(accepted) == []  # the stored trace passes the project's own checks
    assert accepted[0].answer == items[3].answer and len(accepted[0].steps) >= 2
    rejected = read_rejected(rejected_path(out))
    assert {(r.trace.task, r.trace.index): r.reason.split(":")[0] for r in rejected} == {
        ("piqa", 0): "no_answer", ("piqa", 1): "too_few_steps", ("piqa", 4): "wrong_answer",
        ("gsm8k", 1): "wrong_answer",
    }
    assert report.reasons == {"no_answer": 1, "too_few_steps": 1, "wrong_answer": 2}
    assert all(record.raw_response for record in rejected)
    assert [r.key for r in rejected] == sorted((r.key for r in rejected), key=lambda k: (k[0], k[2]))

    records = accepted + [record.trace for record in rejected]
    today = datetime.now(timezone.utc).date().isoformat()
    for trace in records:
        assert trace.provenance["teacher"].startswith(server.model)
        assert (trace.provenance["prompt_version"], trace.provenance["date"]) == (PROMPT_VERSION, today)
    assert report.prompt_tokens == sum(trace.provenance["usage"]["prompt_tokens"] for trace in records) > 0
    assert report.completion_tokens == sum(trace.provenance["usage"]["completion_tokens"] for trace in records) > 0
    assert report.cost_usd is None  # no price for a local model

    # A second call finds everything stored, accepted or rejected, and sends nothing (no endpoint needed).
    again = generate_traces(items, out, model=server.model, progress=False)
    assert (again.requests, again.skipped, again.accepted, again.rejected) == (0, 5, 0, 0)
    assert len(sent) == 5


@pytest.mark.slow
def test_run_interrupted_by_a_dead_server_resumes_without_loss_or_duplicates(server: LocalServer,
                                                                            tmp_path: Path) -> None:
    server.ensure_running()
    items = _piqa(*range(20, 26))
    out = tmp_path / "traces.jsonl"
    client, sent = counting_client(server.base_url)
    settings = dict(model=server.model, max_tokens=8, concurrency=1, retry=FAST_RETRY, progress=False)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(generate_traces, items, out, client=client, **settings)
        deadline = time.monotonic() + 120
        while _line_count(out) < 2 and not first.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()  # SIGKILL while the next request is in flight
        with pytest.raises(TeacherError, match="Run the same command again") as stopped:
            first.result()
    done = _stored_keys(out)
    assert 2 <= len(done) < len(items), "the server must die in the middle of the run"
    assert len(set(done)) == len(done)
    report = stopped.value.report
    assert report.accepted + report.rejected == len(done)
    assert report.missing == len(items) - len(done)
    assert report.requests == len(sent) >= len(done) + FAST_RETRY.max_attempts  # the failed item was retried

    server.start()
    started = time.monotonic()
    client, sent = counting_client(server.base_url)
    resumed = generate_traces(items, out, client=client, **settings)
    seconds = time.monotonic() - started
    missing = [item for item in items if ("piqa", "train", item.index, "default") not in done]
    assert resumed.skipped == len(done)
    assert resumed.accepted + resumed.rejected == len(missing) == resumed.requests == len(sent)
    assert sorted(sent) == sorted(build_messages(item)[-1]["content"] for item in missing)
    assert server.chat_requests_logged() == len(missing)  # the server saw exactly those requests
    final = _stored_keys(out)
    assert sorted(final) == sorted(("piqa", "train", item.index, "default") for item in items)
    assert set(done) <= set(final)  # nothing stored before the crash was lost or rewritten
    print(f"\nresumed run: {len(done)} items stored before the crash, {resumed.requests} requests for the "
          f"{len(missing)} missing ones, {seconds:.1f} s")


@pytest.mark.slow
def test_generator_killed_mid_run_loses_nothing(server: LocalServer, tmp_path: Path) -> None:
    server.ensure_running()
    out = tmp_path / "traces.jsonl"
    command = [sys.executable, "-m", "cachesteer_lite", "teacher", "--task", "piqa", "--split", "train", "--limit", "6",
               "--out", str(out), "--model", server.model, "--base-url", server.base_url, "--max-tokens", "8",
               "--concurrency", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _line_count(out) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a crash: no cleanup of any kind
        stderr = process.communicate()[1].decode()
    assert process.returncode == -signal.SIGKILL, f"the generator ended before it was killed:\n{stderr[-2000:]}"
    done = _stored_keys(out)
    assert 2 <= len(done) < 6 and len(set(done)) == len(done)

    client, sent = counting_client(server.base_url)
    items = load_items("piqa", "train", 6)
    resumed = generate_traces(items, out, model=server.model, client=client, max_tokens=8, progress=False)
    assert resumed.skipped == len(done) and resumed.requests == len(sent) == 6 - len(done)
    assert sorted(_stored_keys(out)) == sorted(("piqa", "train", index, "default") for index in range(6))


def test_local_server_is_configured_before_it_starts(tmp_path: Path) -> None:
    idle = LocalServer("smollm2-135m-instruct", log_dir=tmp_path)
    assert idle.base_url == f"http://127.0.0.1:{idle.port}/v1" and Path(idle.model).is_dir()
    assert not idle.healthy() and idle.chat_requests_logged() == 0
    idle.stop()  # stopping a server that never started does nothing
    with pytest.raises(ValueError, match="unknown model"):
        LocalServer("no-such-model")


@pytest.mark.slow
def test_local_server_as_a_context_manager(tmp_path: Path) -> None:
    """The server answers inside the ``with`` block and is gone (its whole process group killed) after it."""
    with LocalServer("smollm2-135m-instruct", log_dir=tmp_path) as local:
        assert local.healthy()
        process = local.process
    assert process.poll() is not None and not local.healthy()
    assert (tmp_path / "serve-0.log").is_file()


@pytest.mark.slow
def test_unknown_model_stops_the_run_at_once(server: LocalServer, tmp_path: Path) -> None:
    server.ensure_running()
    out = tmp_path / "traces.jsonl"
    client, sent = counting_client(server.base_url)
    with pytest.raises(TeacherError, match="HTTP 400") as stopped:
        generate_traces(_piqa(0, 1, 2), out, model="no-such-model", client=client, concurrency=1, progress=False)
    assert stopped.value.report.requests == len(sent) == 1  # a 400 is not retried, and no further item starts
    assert _stored_keys(out) == []


@pytest.mark.slow
def test_command_line(server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    server.ensure_running()
    out = tmp_path / "cli.jsonl"
    arguments = ["--task", "piqa", "--split", "train", "--limit", "2", "--style", "stepwise", "--out", str(out),
                 "--model", server.model, "--base-url", server.base_url, "--max-tokens", "8", "--no-progress"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "2 items: 0 already stored" in printed and "2 requests" in printed
    assert sorted(_stored_keys(out)) == [("piqa", "train", 0, "stepwise"), ("piqa", "train", 1, "stepwise")]
    assert main(arguments) == 0
    assert "2 already stored" in capsys.readouterr().out


# --- a scripted endpoint for the statuses a local server never sends ---------------------------------------------

GOOD_REPLY = ("A dog is an animal that barks at strangers.\nA cat is an animal that meows instead.\n"
              "So the animal that barks is the dog.\nThe answer is A.")
BARKS = Item("arc_challenge", "train", 5000, "Which animal barks?\n\nChoices:\nA: dog\nB: cat", "A", ("dog", "cat"))


def _completion(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}}


class ScriptedEndpoint:
    """An HTTP server that answers chat requests from a script of (status, body, delay) and counts them."""

    def __init__(self, script: list[tuple[int, dict, float]], default: tuple[int, dict, float] | None = None):
        self.script, self.default = list(script), default
        self.requests = 0
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                with endpoint._lock:
                    endpoint.requests += 1
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    status, body, delay = endpoint.script.pop(0) if endpoint.script else endpoint.default
                try:
                    time.sleep(delay)
                    payload = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client timed out and closed the connection
                    pass
                finally:
                    with endpoint._lock:
                        endpoint.in_flight -= 1

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    endpoints: list[ScriptedEndpoint] = []

    def make(script, default=None) -> ScriptedEndpoint:
        endpoints.append(ScriptedEndpoint(script, default))
        return endpoints[-1]

    yield make
    for endpoint in endpoints:
        endpoint.close()


def _error(message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": "error", "code": code}}


def test_retries_429_5xx_and_timeouts_then_succeeds(scripted, tmp_path: Path) -> None:
    endpoint = scripted([(429, _error("slow down"), 0), (503, _error("busy"), 0), (200, _completion(""), 2.0),
                         (200, _completion(GOOD_REPLY), 0)])
    out = tmp_path / "traces.jsonl"
    report = generate_traces([BARKS], out, model="gpt-4o", base_url=endpoint.base_url, api_key="sk-test",
                             timeout=0.5, retry=RetryPolicy(max_attempts=4, initial_delay=0.01), progress=False)
    assert endpoint.requests == report.requests == 4
    assert (report.accepted, report.rejected) == (1, 0)
    [trace] = read_traces(out)
    assert trace.steps == GOOD_REPLY.splitlines()[:3] and trace.answer == "A"
    assert trace.provenance["teacher"] == "gpt-4o-2024-08-06"
    assert trace.provenance["usage"] == {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
    assert report.cost_usd == pytest.approx((120 * 2.50 + 40 * 10.00) / 1e6)


def test_exhausted_retries_stop_the_run(scripted, tmp_path: Path) -> None:
    endpoint = scripted([], default=(500, _error("down"), 0))
    with pytest.raises(TeacherError, match="InternalServerError") as stopped:
        generate_traces([BARKS], tmp_path / "t.jsonl", base_url=endpoint.base_url, retry=FAST_RETRY, progress=False)
    assert endpoint.requests == stopped.value.report.requests == FAST_RETRY.max_attempts
    assert stopped.value.report.missing == 1 and _stored_keys(tmp_path / "t.jsonl") == []


@pytest.mark.parametrize("status, body, error", [
    (401, _error("bad key"), "AuthenticationError"),
    (429, _error("no credit", "insufficient_quota"), "RateLimitError"),
])
def test_permanent_errors_are_not_retried(scripted, tmp_path: Path, status: int, body: dict, error: str) -> None:
    endpoint = scripted([], default=(status, body, 0))
    with pytest.raises(TeacherError, match=error):
        generate_traces([BARKS], tmp_path / "t.jsonl", base_url=endpoint.base_url, retry=FAST_RETRY, progress=False)
    assert endpoint.requests == 1


def test_concurrency_is_bounded_and_every_item_stored_once(scripted, tmp_path: Path) -> None:
    endpoint = scripted([], default=(200, _completion(GOOD_REPLY), 0.1))
    items = [Item("arc_challenge", "train", 5000 + i, BARKS.question, "A", BARKS.choices) for i in range(12)]
    out = tmp_path / "traces.jsonl"
    report = generate_traces(items[::-1] + items[:3], out, base_url=endpoint.base_url, concurrency=4,
                             progress=False)
    assert report.items == report.accepted == report.requests == endpoint.requests == 12
    assert 2 <= endpoint.max_in_flight <= 4
    assert [trace.index for trace in read_traces(out)] == list(range(5000, 5012))  # sorted at the end


# --- configuration, parsing, store, prices -----------------------------------------------------------------------


def test_no_endpoint_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(TeacherConfigError, match="OPENAI_API_KEY") as error:
        generate_traces([BARKS], tmp_path / "t.jsonl", progress=False)
    assert "OPENAI_BASE_URL" in str(error.value) and "data/traces/" in str(error.value)
    assert main(["--task", "piqa", "--limit", "1", "--out", str(tmp_path / "t.jsonl"), "--no-progress"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_one_prompt_per_style() -> None:
    assert set(STYLE_INSTRUCTIONS) == set(STYLES)
    prompts = {style: build_messages(BARKS, style)[-1]["content"] for style in STYLES}
    assert len(set(prompts.values())) == len(STYLES)
    assert all(BARKS.question in prompt and "(A, B)" in prompt for prompt in prompts.values())
    assert "Step 1:" in prompts["stepwise"] and "Just like" in prompts["analogical"]
    gsm8k = Item("gsm8k", "train", 0, "Tom has 2 apples and buys 3. How many?", "5")
    assert "final number" in build_messages(gsm8k)[-1]["content"]
    with pytest.raises(ValueError, match="valid styles"):
        build_messages(BARKS, "socratic")


@pytest.mark.parametrize("text, numeric, steps, answer", [
    ("Step 1: a.\nStep 2: b.\nThe answer is B.", False, ["Step 1: a.", "Step 2: b."], "B"),
    ("- x\n**y**\nSo the answer is option C.", False, ["x", "y", "So the answer is option C."], "C"),
    ("1. x\n2. y\nThe answer is: (D) foo", False, ["x", "y"], "D"),
    ("x\ny\nThe answer is A.\n\nThe answer is A.", False, ["x", "y"], "A"),
    ("x\ny\nThe answer is X.", False, ["x", "y", "The answer is X."], ""),
    ("The answer is B.\nx\ny", False, ["The answer is B.", "x", "y"], ""),
    ("She had 3. She bought 2 more. Final answer: 1,005", True, ["She had 3.", "She bought 2 more."], "1005"),
    ("a\nb\nThe answer is $18.50.", True, ["a", "b"], "18.5"),
    ("", False, [], ""),
])
def test_parse_response(text: str, numeric: bool, steps: list[str], answer: str) -> None:
    assert parse_response(text, numeric) == (steps, answer)


DOG, CAT = "A dog is an animal that barks at strangers.", "A cat is an animal that meows instead."


def _trace(steps: list[str], answer: str) -> Trace:
    return Trace(BARKS.task, BARKS.split, BARKS.index, "", BARKS.question, steps, answer, "default",
                 {"teacher": "t", "prompt_version": "v", "date": "d", "usage": None})


@pytest.mark.parametrize("steps, answer, finish, code", [
    ([DOG, CAT], "A", "stop", None),
    ([DOG, CAT], "A", "length", "truncated"),
    ([DOG, CAT], "A", "content_filter", "refused"),
    ([DOG], "", "stop", "no_answer"),
    ([DOG, CAT], "C", "stop", "invalid_answer"),
    ([DOG, CAT], "B", "stop", "wrong_answer"),
    ([DOG], "A", "stop", "too_few_steps"),
    ([DOG, "So the answer is B, the cat."], "A", "stop", "invalid_trace"),
])
def test_rejection_reason(steps: list[str], answer: str, finish: str, code: str | None) -> None:
    reason = rejection_reason(BARKS, _trace(steps, answer), finish)
    assert (reason.split(":")[0] if reason else None) == code


def test_store_refuses_duplicates_and_repairs_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    store = TraceStore(out)
    good = _trace([DOG, CAT], "A")
    store.add(good)
    with pytest.raises(ValueError, match="already stored"):
        store.add(RejectedTrace(good, "wrong_answer: x", "raw"))
    with out.open("a") as handle:  # a crash in the middle of writing the next line
        handle.write('{"task": "arc_challenge", "split": "tr')
    with pytest.warns(UserWarning, match="incomplete last line"):
        reopened = TraceStore(out)
    assert good.key in reopened and read_traces(out) == [good]


def test_rejected_records_round_trip(tmp_path: Path) -> None:
    record = RejectedTrace(_trace([], ""), "no_answer: none", "The answer is X.")
    assert RejectedTrace.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert rejected_path(tmp_path / "x.jsonl") == tmp_path / "x.rejected.jsonl"
    assert read_rejected(tmp_path / "absent.rejected.jsonl") == []


def test_prices_and_retry_classification() -> None:
    assert price_per_million_tokens("gpt-4o") == (2.50, 10.00)
    assert price_per_million_tokens("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_per_million_tokens("gpt-4o-2024-05-13") == (5.00, 15.00)
    assert price_per_million_tokens("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_per_million_tokens("gpt-4o-audio-preview") is None
    assert cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd("llama3", 10, 10) is None
    assert not is_retryable(ValueError("not an API error"))
