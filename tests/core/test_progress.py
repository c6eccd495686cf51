"""Progress bars: silent when the caller asks (progress=False) or the environment does (TQDM_DISABLE=1)."""

from __future__ import annotations

import pytest

from cachesteer_lite.core.progress import progress_bar


@pytest.mark.parametrize("enabled, environment, silent", [(True, None, False), (False, None, True),
                                                          (True, "1", True), (False, "1", True)])
def test_progress_bars_obey_the_caller_and_the_environment(monkeypatch, enabled, environment, silent):
    if environment is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", environment)
    with progress_bar(range(3), enabled=enabled) as bar:
        assert bar.disable is silent and list(bar) == [0, 1, 2]
