# codestudio: the two commands a newcomer needs are `make demo` and `make test`.
# Both set up everything on a fresh Debian machine (as root: apt packages;
# otherwise the packages must already be there) and a venv in .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := buildah podman runc slirp4netns nginx debootstrap debian-archive-keyring busybox-static git ca-certificates chromium chromium-driver docker-registry
PLUGINS := advanced codeenv jupyterlab vscode rstudio streamlit gradio dash voila
PYTEST_ARGS ?=

.PHONY: test test-quick demo bench system venv clean

## make test: set up and run the whole test suite (unit and end-to-end)
test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

## make test-quick: unit tests only (no buildah, podman or nginx)
test-quick: venv
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

## make demo: build the example template, start a studio, print its URL
demo: venv
	$(BIN)/python -m codestudio.demo examples/jupyter-lab-template.yaml

## make bench: every benchmark in bench/, each printing a table
bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

system:
	@bash scripts/install-system.sh $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) | system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=68" wheel
	$(BIN)/pip install -q -e '.[test,server]' $(foreach p,$(PLUGINS),$(if $(wildcard plugins/$(p)/pyproject.toml),-e plugins/$(p)))
	touch $@

venv: system $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache
