# Two entry points for a fresh machine: `make book` and `make test`.
# Both create .venv/ (inside the repo) on first use and reinstall when requirements.txt changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MOT_PROGRESS ?= 0

.PHONY: book test unit bench install clean

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# make `import mot_lib` work in every kernel started from this venv, wherever the notebook sits
	$(PY) -c "import site, os; open(os.path.join(site.getsitepackages()[0], 'mot_lib_repo.pth'), 'w').write(os.getcwd() + '\n')"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

unit: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf _build
