# The two commands of the README: `make book` (execute the notebooks on the embedded model, build the HTML)
# and `make test` (the test suite). Both set up .venv first.
SHELL := /bin/bash
VENV := .venv/bin
export CACHESTEER_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup test book benchmark clean

setup:
	bash scripts/setup.sh

test: setup
	$(VENV)/python -m pytest -q

book: setup
	$(VENV)/jupyter-book build . -W -n --keep-going --builder html

benchmark: setup
	$(VENV)/python benchmarks/bench_core.py

clean:
	rm -rf _build
