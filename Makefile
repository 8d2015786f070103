# Two entry points for a fresh machine: `make book` and `make test`.
# Both create .venv/ (inside the repo) on first use and reinstall when requirements.txt (or requirements-test.txt) changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NBVAL  := --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 600
export MOT_PROGRESS ?= 0
# The CPU numerics every chapter is computed with (mot_lib/engine/numerics.py): the same numbers on every x86-64 CPU,
# whatever the shell sets. Kernels, papermill and sweep workers inherit them; mot_lib pins them too.
export ATEN_CPU_CAPABILITY := avx2
export MKL_CBWR := COMPATIBLE,STRICT
export DNNL_MAX_CPU_ISA := AVX2
export MOT_THREADS := 1
export MOT_NUMERICS :=
# glibc keeps freed memory for the next allocation instead of returning it to the kernel: the engine's large
# temporaries then skip the page faults of fresh memory (9% of chapter 04's training; no number changes)
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824

.PHONY: book test unit nbval bench regime install clean sync execute

install: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	# mot_lib as an editable package (pyproject.toml): `import mot_lib` works in every kernel, from any folder
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## make book: execute every chapter (cached; the cache is cleared when mot_lib changes; tools/prebuild.py runs the
## chapters the cache lacks on every core, MOT_BUILD_JOBS at a time) and build the HTML book
book: $(STAMP)
	$(PY) tools/cache_guard.py
	$(PY) tools/prebuild.py
	$(VENV)/bin/jupyter-book build . --builder html -W --keep-going
	@echo "open _build/html/index.html"

## make test: every chapter re-executed and compared with its committed outputs (nbval; they write the
## verdicts the scorecard reads), the unit tests, and the HTML book built from the committed outputs.
## Two passes on every core (pytest-xdist, TEST_JOBS workers, one file per worker): the chapters and the tests,
## then what reads the verdicts the chapters wrote (the scorecard, the first page, tests marked `verdicts`).
## Each chapter runs on one thread in its own kernel, so its numbers do not depend on the worker; the chapters run
## side by side, so each keeps its runs in its kernel (MOT_CHAPTER_JOBS=1 unless set).
TEST_JOBS ?= auto
XDIST := -n $(TEST_JOBS) --dist loadfile
test: $(STAMP)
	@rc=0; export MOT_CHAPTER_JOBS=$${MOT_CHAPTER_JOBS:-1}; \
	$(PY) -m pytest -q $(XDIST) --nbval notebooks tests $(NBVAL) -m "not verdicts" || rc=1; \
	$(PY) -m pytest -q $(XDIST) --nbval notebooks tests $(NBVAL) -m verdicts || rc=1; \
	exit $$rc

unit: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not book"

nbval: $(STAMP)
	$(PY) -m pytest -q --nbval notebooks $(NBVAL)

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

regime: $(STAMP)
	$(PY) -m mot_lib regime

## make sync: bring every chapter's pair in step after editing either file (jupytext: the newer of
## notebooks/<chapter>.md and notebooks/<chapter>.ipynb wins; the .ipynb keeps its outputs)
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.md

## make execute NB=notebooks/04_lemma1.ipynb: re-execute a chapter in place (fresh kernel, cwd notebooks/,
## MOT_PROGRESS=0, execution timestamps stripped), so its committed outputs are those nbval compares; then sync
execute: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make execute NB=notebooks/<chapter>.ipynb"; exit 2; }
	$(PY) tools/execute.py $(NB)
	$(VENV)/bin/jupytext --sync $(NB)

clean:
	rm -rf _build
