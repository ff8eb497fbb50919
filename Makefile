# privaudit: `make demo` runs the example audit, `make test` runs every test.
# Both create .venv from requirements.txt first when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE_WEIGHTS := example/models/digits_mlp/digits_mlp.pdparams

.PHONY: venv demo test lint proto example clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

example: $(EXAMPLE_WEIGHTS)

$(EXAMPLE_WEIGHTS): $(STAMP) example/train_target.py
	$(PY) example/train_target.py

demo: venv example
	$(PY) main.py example/tasks/mem_inf.yaml

test: venv example
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	cd protos && ../$(VENV)/bin/buf lint

proto: venv
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) .pytest_cache
	find example -name '*.pdparams' -delete
