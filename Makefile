# The two commands of the README: `make book` (build the site from the notebooks' committed outputs, the pages a
# reader sees) and `make test` (the type checker and linter; then two lanes side by side: the test suite, the course
# editions' check and the notebooks from a fresh wheel install, beside every notebook executed at the quick size in
# a scratch copy, the strict book build and the notebooks with tiny models of four architectures; then a check of
# the built site in a browser). `make book-outputs` re-executes the notebooks at the `book` size and writes their
# outputs back: the run the published pages show. All targets set up .venv first.
SHELL := /bin/bash
VENV := .venv/bin
# The task data: ../shared/data beside a checkout when it is there, else the Hugging Face hub (offline, the library
# stops with one sentence that names CACHESTEER_DATA_DIR). `make book` needs no data: it executes nothing.
ifneq ($(wildcard ../shared/data/*.jsonl),)
export CACHESTEER_DATA_DIR ?= $(abspath ../shared/data)
endif
# The tiny random models of four architectures (scripts/tiny_models.py), built once for the checks that use them.
TINY_MODELS := $(abspath _build/tiny_models)

# Notebooks run on the embedded model, quick size, unless these are set otherwise.
BOOK_ENV := CACHESTEER_MODEL=$${CACHESTEER_MODEL:-smollm2-135m-instruct} \
	CACHESTEER_RUN_SIZE=$${CACHESTEER_RUN_SIZE:-quick} \
	HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 \
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}
# OMP_NUM_THREADS=1: on a CPU shared with other jobs, torch's default (one thread per core) made generation
# with the 135M model over 20 times slower than one thread; set it explicitly to use more threads.

.PHONY: setup test tests-and-course book-and-models suite test-fast check book book-outputs notebooks-check check-site \
	benchmark pages course course-check slides wheel-check tiny-models tiny-check tiny-check-all clean

setup:
	bash scripts/setup.sh

# Two lanes side by side, one thread each (each notebook runs on one thread anyway), on a 2-core machine about
# as long as each other; CI runs this target (.ci/run) and keeps under an hour.
test: setup
	$(MAKE) --no-print-directory check
	$(MAKE) --no-print-directory tiny-models
	$(MAKE) --no-print-directory -j2 --output-sync=target tests-and-course book-and-models
	$(MAKE) --no-print-directory check-site

# One lane of `make test`: the suite, the course editions, the notebooks from a pip install.
tests-and-course: setup
	$(MAKE) --no-print-directory suite
	$(MAKE) --no-print-directory course-check
	$(MAKE) --no-print-directory wheel-check

# The other lane: every notebook executed (quick), the strict book build, the notebooks with tiny models.
book-and-models: setup
	$(MAKE) --no-print-directory notebooks-check
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory tiny-check-all

# The whole test suite on the real embedded models.
suite: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV)/python -m pytest -q --durations=15

# The fast lane: every module, without the end-to-end runs, the Gemma-3 conversion, the server and the style grid.
test-fast: setup
	$(VENV)/python -m pytest -q -m "not slow"

# The type checker and the linter, both clean.
check: setup
	$(VENV)/mypy
	$(VENV)/ruff check cachesteer_lite tests benchmarks scripts

# The generated tables of book/reproducibility.md (results and deviations), from the stored runs and the code.
pages: setup
	$(VENV)/python -m cachesteer_lite pages

# The site from the notebooks' committed outputs (nothing is executed: _config.yml); any Sphinx warning fails the
# build (-W; --all and the fresh _build/html: every page is rebuilt, and no page of an earlier build is left behind).
book: setup
	rm -rf _build/html
	$(VENV)/jupyter-book build . --all -W -n --keep-going --builder html
	$(VENV)/python scripts/course_editions.py slides _build/slides

# Every notebook executes from a clean kernel at the quick size, each in a scratch folder: a failing cell fails CI,
# and the committed outputs are never touched.
notebooks-check: setup
	$(BOOK_ENV) $(VENV)/python scripts/run_notebooks.py --size quick --timeout 1800 notebooks/[0-9][0-9]_*.ipynb

# The outputs the book publishes: every notebook re-executed at the `book` size (embedded model, CPU: about an hour
# on one core, in the background) and written back, then the course editions and pages regenerated.
book-outputs: setup
	$(BOOK_ENV) $(VENV)/python scripts/run_notebooks.py --size book --write-back --timeout 3600 \
		notebooks/[0-9][0-9]_*.ipynb
	$(VENV)/python scripts/course_editions.py build
	$(VENV)/python -m cachesteer_lite pages

# A real browser loads every page of _build/html (scripts/check_site.py); Chromium is installed when missing.
check-site: setup
	bash scripts/setup_browser.sh
	$(VENV)/python scripts/check_site.py _build/html

# The course kit (book/course_guide.md): the student and teacher editions from the notebooks (nbgrader).
course: setup
	$(VENV)/python scripts/course_editions.py build

# The committed editions are up to date and leak no solution; every student notebook runs in `smoke` size, its
# blank exercises answered by their checkers ("not yet: set answer_N ...") instead of a traceback. What is checked is
# the blanks, not the model: the tiny Qwen2 runs all eight in under 3 minutes, the embedded model in about 9.
course-check: setup tiny-models
	$(VENV)/python scripts/course_editions.py check
	$(BOOK_ENV) CACHESTEER_RUN_SIZE=smoke CACHESTEER_MODEL=$(TINY_MODELS)/qwen2 \
		$(VENV)/python scripts/course_editions.py execute course/student

# The notebooks as a pip install runs them (Colab): the wheel in a fresh environment outside the checkout, the data
# files downloaded from the repository served on loopback, all eight notebooks in `smoke` size from an empty folder.
wheel-check: setup
	bash scripts/wheel_check.sh

# Any decoder model: tiny random models of four architectures (scripts/tiny_models.py: Qwen2, Llama-3 with a dated
# template, Phi-3, Gemma-3 with sliding windows) through the notebooks in `smoke` size. `make test` runs all four
# through all eight (32 runs, about 9 minutes on CI's machine); `make tiny-check` is the half of it that still gives
# every notebook two architectures and every architecture four notebooks (16 runs).
RUN_TINY = $(BOOK_ENV) $(VENV)/python scripts/run_notebooks.py --model $(TINY_MODELS)
tiny-check: setup tiny-models
	$(RUN_TINY)/qwen2 notebooks/0[1357]_*.ipynb
	$(RUN_TINY)/gemma3 notebooks/0[2468]_*.ipynb
	$(RUN_TINY)/llama3 notebooks/0[1256]_*.ipynb
	$(RUN_TINY)/phi3 notebooks/0[3478]_*.ipynb

tiny-check-all: setup tiny-models
	for arch in qwen2 llama3 phi3 gemma3; do $(RUN_TINY)/$$arch notebooks/[0-9][0-9]_*.ipynb || exit 1; done

# The tiny models' folders, written once (about 45 s) and rebuilt only when their script changes.
tiny-models: setup $(TINY_MODELS)/.built
$(TINY_MODELS)/.built: scripts/tiny_models.py
	$(VENV)/python scripts/tiny_models.py $(TINY_MODELS)
	touch $@

# A reveal.js slide deck per notebook, from its committed outputs, in _build/slides (`make book` builds them too).
slides: setup
	$(VENV)/python scripts/course_editions.py slides _build/slides

benchmark: setup
	$(VENV)/python benchmarks/bench_core.py

clean:
	rm -rf _build
