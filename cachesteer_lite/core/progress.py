"""Progress bars that stay silent when asked to, by the caller (``progress=False``) or the environment.

tqdm reads ``TQDM_DISABLE`` once, when it is imported, and only for arguments the caller leaves out: a caller's
``disable=False`` would override a reader's ``TQDM_DISABLE=1``, and setting it later would do nothing. Here the
variable is read each time a bar is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def disabled_by_environment() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no bars (any value but empty, 0, false or no)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable``, silent when ``enabled`` is False or ``TQDM_DISABLE`` is set."""
    return tqdm(iterable, disable=not enabled or disabled_by_environment(), **kwargs)
