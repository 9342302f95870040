# Set-up and everyday commands. README.md documents `make demo` and `make test`.
#
# The virtual environment is (re)built whenever it is missing or older than the
# lock file. TFX 1.16 declares Requires-Python <3.11 although all of its binary
# dependencies ship cp311 wheels, hence --ignore-requires-python; the lock is
# fully resolved, hence --no-deps (pip's resolver backtracks for a long time on tfx).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTEST_ARGS ?=

.PHONY: demo test test-fast bench lock clean

$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --ignore-requires-python --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --ignore-requires-python --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipelines.movies.local_runner $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

# Re-resolve the lock for Python 3.10 (TFX 1.16's declared ceiling) on manylinux,
# with the versions that Python 3.11 needs forced (requirements-overrides.txt).
# bokeh-sampledata is installed without its own requirements (they would pull a
# pandas that tfx-bsl 1.16 rejects), so it is appended after resolution.
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile requirements.in --python-version 3.10 \
	  --override requirements-overrides.txt \
	  --python-platform x86_64-manylinux_2_28 --no-python-downloads -o requirements.lock
	printf '%s\n' 'bokeh-sampledata==2026.1' '    # demo data (movies.db); installed with --no-deps' >> requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
