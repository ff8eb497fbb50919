# privaudit: `make demo` runs the example audit, `make test` runs every test.
# Both create .venv from requirements.txt first when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE_WEIGHTS := example/models/digits_mlp/digits_mlp.pdparams

.PHONY: venv demo test lint proto example clean bench bench-scale

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

example: $(EXAMPLE_WEIGHTS)

$(EXAMPLE_WEIGHTS): $(STAMP) example/train_target.py example/digits.py example/models/digits_mlp/digits_mlp.py
	$(PY) example/train_target.py

demo: venv example
	$(PY) main.py example/tasks/mem_inf.yaml

test: venv example k8s-check
	$(PY) -m pytest

# Apart from the tests: prints a table of measured ratios, writes $(BENCH_OUT) (default bench-results.json).
bench: venv example
	$(PY) tests/benchmarks/bench.py

# LiRA with 64 shadow models over 30,000 records through a local cluster: time, memory, message sizes.
bench-scale: venv
	$(PY) tests/benchmarks/bench_scale.py

lint: venv
	$(VENV)/bin/ruff check .
	cd protos && ../$(VENV)/bin/buf lint

proto: venv
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) .venv-k8s build/k8s .pytest_cache
	find example -name '*.pdparams' -delete

# --- Deployment: images and Kubernetes manifests (deploy/) ---
# The manifest checkers live in their own venv: their dependencies clash with the project's.
K8S_VENV := .venv-k8s
K8S_STAMP := $(K8S_VENV)/.installed
IMAGE_PREFIX ?= privaudit/
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: k8s-check images

$(K8S_STAMP): deploy/k8s/requirements-check.txt
	test -x $(K8S_VENV)/bin/python || $(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/k8s/requirements-check.txt
	touch $(K8S_STAMP)

k8s-check: $(K8S_STAMP)
	deploy/k8s/check.sh $(K8S_VENV)

images:
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine here ('docker info' fails): no image built" >&2; exit 1; }
	docker build -f services/orchestrator/Dockerfile -t $(IMAGE_PREFIX)orchestrator:$(IMAGE_TAG) .
	docker build -f services/reporter/Dockerfile -t $(IMAGE_PREFIX)reporter:$(IMAGE_TAG) .
	docker build -f services/attack_worker/Dockerfile -t $(IMAGE_PREFIX)attack-worker:$(IMAGE_TAG) .
	docker build -f services/attack_worker/Dockerfile --build-arg VARIANT=gpu -t $(IMAGE_PREFIX)attack-worker:$(IMAGE_TAG)-gpu .
