# Set-up and the two README commands. `make demo` and `make test` each build .venv on first use.
# CPU torch by default (a local wheel); GPU users: install their CUDA torch into .venv first and run
# with TORCH= (empty) so the CPU pin is skipped, e.g. `make demo TORCH=`.
PY ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: venv demo test docs clean-venv
venv: $(VENV)/.installed

# pip -q still shows what the build backend writes: setuptools' one-off "Editable installation" notice (information,
# nothing to act on) is filtered by its message, so a fresh install prints the steps below and nothing else.
$(VENV)/.installed: setup.py settings.ini pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)")
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: venv
	$(BIN)/spft demo $(if $(OUT),--out $(OUT))

test: venv
	bash tests/setup_browser.sh
	$(BIN)/python -m pytest tests

docs: venv
	$(BIN)/python -m speech_prefinetune.docs

clean-venv:
	rm -rf $(VENV)
