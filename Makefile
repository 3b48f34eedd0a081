# The two commands a user needs: `make demo` and `make test`. Everything else is a step they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The install stamp changes with pyproject.toml, so a dependency change reinstalls and nothing else does.
INSTALL_STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-integration test-pilot wheel matrix venv lint typecheck system engine images \
        sites-up sites-down docs clean

demo: venv
	$(PY) examples/demo.py

# Pilot mode's tests run inside a loopback-only network namespace (Ray listens on every interface there).
test: images lint typecheck
	$(VENV)/bin/pytest -m "not pilot" --durations=25 $(PYTEST_ARGS)
	$(MAKE) test-pilot

test-pilot: images
	$(VENV)/bin/python ci/netns.py run -- $(VENV)/bin/pytest -m pilot tests/pilot tests/contract --durations=15 $(PYTEST_ARGS)

# Fast tier: no Docker, no Slurm sites, no wheel built.
test-unit: lint typecheck
	$(VENV)/bin/pytest -m "not slurm and not docker and not wheel" $(PYTEST_ARGS)

test-integration: images venv
	$(VENV)/bin/pytest -m "(slurm or docker or wheel) and not pilot" $(PYTEST_ARGS)
	$(MAKE) test-pilot

# The wheel as a user gets it: built, installed into a fresh virtualenv, a campaign run from it (also part
# of `make test`, as tests/integration/test_wheel.py).
wheel: venv
	$(VENV)/bin/pytest -m wheel $(PYTEST_ARGS)

# The scheduler test matrix: the conformance suite and fault injection against every containerized
# scheduler; rewrites docs/test-matrix.md and docs/test-matrix.json (exit 1 if a cell failed).
matrix: images
	$(VENV)/bin/metasched testmatrix

venv: $(INSTALL_STAMP)

$(INSTALL_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,globus]'
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

system:
	bash ci/install-system.sh

engine: system
	bash ci/docker-engine.sh

images: engine venv
	$(PY) ci/images.py all

sites-up: images
	$(PY) ci/slurm-cluster/slurmsite.py up alpha
	$(PY) ci/slurm-cluster/slurmsite.py up beta

sites-down: venv
	$(PY) ci/slurm-cluster/slurmsite.py down alpha
	$(PY) ci/slurm-cluster/slurmsite.py down beta

docs: venv
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf build dist site .mypy_cache .ruff_cache .pytest_cache
