"""A local OpenAI-compatible endpoint: ``transformers serve`` for one model, on loopback.

Readers without an API key can point the trace generator (:mod:`cachesteer_lite.teacher.generate`) at it, and the tests
use it to exercise the real ``openai`` client against a real server. It speaks the same API as GPT-4o, vLLM or
Ollama, so the code that talks to it is the code that talks to them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from ..core.models import DEFAULT_MODEL, resolve_dtype, resolve_model_path

START_TIMEOUT_S = 180.0


class ServerError(RuntimeError):
    """The local server could not start, or stopped answering."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``transformers serve`` for ``model`` (an embedded name, a local folder or a hub id) on a free loopback port.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. ``base_url`` is what the ``openai``
    client needs (any API key works) and ``model`` is the name to request. Each start writes a new log file in
    ``log_dir``. ``threads`` sets the server's CPU threads: on a small shared machine, torch's default of one
    per core oversubscribes and runs several times slower. ``dtype`` is the weights' precision ("float32",
    "bfloat16", ...; "auto": as :func:`~cachesteer_lite.core.models.resolve_dtype` picks it for ``device``).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cpu", threads: int = 1, dtype: str = "auto",
                 log_dir: str | Path | None = None) -> None:
        self.model = resolve_model_path(model)
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="cachesteer-serve-"))
        self.log: Path | None = None
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until ``/health`` answers; ServerError with the log's tail if it does not."""
        missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
        if missing:
            raise ServerError(f"`transformers serve` needs {', '.join(missing)}: "
                              "pip install 'transformers[serving]'")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_dir / f"serve-{len(list(self.log_dir.glob('serve-*.log')))}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "OMP_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1"}
        dtype_name = str(resolve_dtype(self.dtype, self.device)).removeprefix("torch.")
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model, "--host", "127.0.0.1",
                   "--port", str(self.port), "--device", self.device, "--dtype", dtype_name, "--log-level", "info"]
        with self.log.open("w") as log:
            # Its own process group, so that stop() also ends any worker it spawns.
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"transformers serve exited with {self.process.returncode}:\n{self._log_tail()}")
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"transformers serve did not answer /health in {timeout:.0f} s:\n{self._log_tail()}")

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server at once (SIGKILL to its process group, as a crash would); a no-op when stopped."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def ensure_running(self) -> None:
        """Start the server unless it is running."""
        if self.process is None or self.process.poll() is not None:
            self.start()

    def chat_requests_logged(self) -> int:
        """``POST /v1/chat/completions`` requests in the current log: the server's own count."""
        return 0 if self.log is None else self.log.read_text().count("POST /v1/chat/completions")

    def _log_tail(self, chars: int = 3000) -> str:
        return "" if self.log is None else self.log.read_text()[-chars:]

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
