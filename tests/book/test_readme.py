"""The README's "library in ten lines" runs as written."""

from __future__ import annotations

import re

import pytest

from conftest import REPO


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch, smollm2):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The library in ten lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)  # vector.save writes into the working directory
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "my_vector.safetensors").is_file() and (tmp_path / "my_vector.json").is_file()
    plain, steered = namespace["plain"][0], namespace["steered"][0]
    assert plain.text and steered.text and plain.text != steered.text
