"""Chain-of-thought traces from a teacher model behind an OpenAI-compatible API (GPT-4o by default).

The paper's contrastive demonstrations use GPT-4o reasoning traces, whose generation prompt was never published.
This subpackage regenerates such traces for any (question, gold answer) items through the official ``openai``
client: what the teacher is asked and how its reply is judged (:mod:`prompts`), where the results go
(:mod:`store`), the endpoint, retries and cost (:mod:`client`), the concurrent, resumable run
(:mod:`generate`) and the command line (:mod:`cli`). Any OpenAI-compatible server works as the teacher: GPT-4o,
vLLM, Ollama, or the local ``transformers serve`` of :mod:`serve`, which readers without a key and the tests use.

It needs the ``teacher`` extra (``pip install 'cachesteer-lite[teacher]'``): the ``openai`` client, and
``transformers[serving]`` for the local server.
"""

from __future__ import annotations

from .client import PRICES_PER_MILLION_TOKENS, RetryPolicy, TeacherConfigError, cost_usd, make_client
from .generate import DEFAULT_TEACHER, RunReport, TeacherError, generate_traces
from .prompts import PROMPT_VERSION, STYLE_INSTRUCTIONS, build_messages, parse_response, rejection_reason
from .serve import LocalServer
from .store import RejectedTrace, TraceStore, read_rejected, rejected_path

__all__ = [
    "DEFAULT_TEACHER",
    "PRICES_PER_MILLION_TOKENS",
    "PROMPT_VERSION",
    "STYLE_INSTRUCTIONS",
    "LocalServer",
    "RejectedTrace",
    "RetryPolicy",
    "RunReport",
    "TeacherConfigError",
    "TeacherError",
    "TraceStore",
    "build_messages",
    "cost_usd",
    "generate_traces",
    "make_client",
    "parse_response",
    "read_rejected",
    "rejected_path",
    "rejection_reason",
]
