# The two commands a newcomer needs:  `make run`  (set up + run the pipeline)  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# pytest-xdist workers of `make test` (tests/conftest.py keeps tests that share fixtures on one worker)
TEST_WORKERS ?= 2
LOCK_FLAGS := --python-version 3.11 --extra-index-url file:///opt/pypi/simple \
	--extra-index-url file:///opt/pypi-more/simple --find-links /opt/wheels --index-strategy unsafe-best-match

.PHONY: setup run test test-all test-containers images lint lock benchmarks clean

setup: $(VENV)/.installed

# Everything comes from the fully pinned lock; --no-deps keeps pip's resolver out of it. The lock's modules
# are byte-compiled once, on every core (pip would do it one file at a time): where PYTHONDONTWRITEBYTECODE
# is set, as on many CI machines, Python never writes them itself and every process would compile torch,
# timm and mlflow from source again (`import timm` 25 s instead of 9 s on 2 cores). Package test suites
# are skipped, and the modules written for newer Pythons (torch's py312_intrinsics), which never import here.
$(VENV)/.installed: requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --no-compile -r requirements/dev.lock
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/|py31[2-9]' $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# One plain process per stage; each training step trains all its tasks and folds in its one process.
run: setup  ## the main job: the whole pipeline on the embedded default (phantom, tiny profile)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup  ## the default test suite (everything but tests marked slow); starts its own services
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup --durations=30

test-all: setup  ## every test but the container run (that one needs root, podman and an image build)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -m "not containers"

test-containers: setup  ## slow: build the image, run the tiny pipeline in it (kfp.local DockerRunner on podman)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -m containers -rP

images:  ## build the image targets that build offline here with podman (cuda, mlflow); docker/README.md
	docker/build-images.sh

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

lock:  ## re-resolve the locks after editing requirements/*.in (needs `uv`)
	uv pip compile requirements/runtime.in -o requirements/runtime.lock $(LOCK_FLAGS)
	uv pip compile requirements/dev.in -o requirements/dev.lock $(LOCK_FLAGS)

benchmarks: setup  ## every benchmark in its tiny mode; names the ones that failed
	@failed=""; for script in benchmarks/*.py; do echo "== $$script --tiny"; \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$script --tiny || failed="$$failed $$script"; done; \
		if [ -n "$$failed" ]; then echo "benchmarks failed:$$failed"; exit 1; fi

clean:
	rm -rf data models reports mlruns mlflow.db
