"""The teacher's endpoint: an ``openai`` client for any OpenAI-compatible server, retries, and what it costs."""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import openai
from openai import OpenAI

PRICES_PER_MILLION_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
}

# The authors' published trace files (GitHub MaxBelitsky/cache-steering, folder local_data/, no license: never
# commit them). Their folders are arc_oai, csqa_oai, piqa_oai, gsm8k_oai and arc_<style> (paper-reference

_NO_ENDPOINT_HELP = (
    "no teacher endpoint configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an endpoint other than "
    "OpenAI, e.g. http://127.0.0.1:8000/v1 for a local `transformers serve`, vLLM or Ollama), or pass "
    "api_key=/base_url= (--api-key/--base-url on the command line). No endpoint? The traces shipped in "
    "data/traces/ are ready to use: cachesteer_lite.tasks.contrastive.default_traces_path('arc_challenge') gives "
    "one (build_contrastive_set reads them by default)."
)


class TeacherConfigError(RuntimeError):
    """No usable teacher endpoint is configured; the message says how to set one or use the shipped traces."""


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
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_delay)
            except ValueError:  # an HTTP date, not seconds: back off as usual
                pass
        base = min(self.initial_delay * 2 ** (attempt - 1), self.max_delay)
        return base * (0.5 + random.random() / 2)


DEFAULT_RETRY = RetryPolicy()
