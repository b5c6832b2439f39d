# Two entry points: `make demo` (the main job: train a CNN on MNIST) and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m luban.examples.mnist

# the test suite, then the conformance kit on every device that runs here
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests
	for d in $$($(BIN)/python -c "from luban.runtime import usable_devices; print(*usable_devices())"); do \
		$(BIN)/python -m luban.conformance --device $$d || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
