# ModelApp: operator + scoring service. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
UV ?= $(or $(shell command -v uv 2>/dev/null),$(HOME)/.local/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/.local/bin
export PATH := $(BIN):$(PATH)
PACKAGES := bundle/modelapp_bundle operator/modelapp_operator scoring-service/scoring_service
PYTEST_ARGS ?=

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python python3
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv/ with the project (editable) and every extra

.PHONY: tools
tools: ## Build the test bed's binaries from source (cached in ~/.cache/modelapp) and install Azurite
	bash hack/build-tools.sh

.PHONY: cluster-up
cluster-up: tools ## Start the control plane, the real node (containerd, kubelet, kube-proxy, registry, images), KWOK nodes and Azurite (idempotent; root)
	bash hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop everything cluster-up started
	bash hack/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Say which test bed components run
	bash hack/cluster.sh status

.PHONY: lint
lint: install ## ruff check, ruff format --check, mypy --strict, requirements/ current with uv.lock
	bash hack/check-requirements.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict $(PACKAGES)

.PHONY: format
format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: test-unit
test-unit: install ## Unit tests only (no test bed)
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: install tools ## Integration and e2e tests (bring the test bed up, or reuse a running one)
	$(VENV)/bin/pytest -m "integration or e2e" $(PYTEST_ARGS)

.PHONY: chart-check
chart-check: tools ## helm lint the chart; check its CRDs and docs/crd-reference.md against crds/
	$(BIN)/helm lint --strict charts/modelapp-operator
	bash hack/check-chart-crds.sh
	$(PY) hack/crd_docs.py --check

.PHONY: docs
docs: install ## Regenerate docs/crd-reference.md from the CRD schema
	$(PY) hack/crd_docs.py

.PHONY: proto
proto: install ## Regenerate the scorer's protobuf modules from scoring_service/proto/grpc_predict_v2.proto
	bash hack/gen-proto.sh

.PHONY: test-e2e
test-e2e: install tools ## The chart's e2e tests on the test bed (helm, RBAC, the operator with the chart's identity)
	$(VENV)/bin/pytest -m e2e tests/e2e $(PYTEST_ARGS)

.PHONY: test
test: install tools lint chart-check ## Lint, then every test: unit, integration, e2e
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: bench-scorer
bench-scorer: install ## Scorer vs MLServer vs a bare ASGI endpoint (wrk, pinned cores)
	$(PY) bench/scorer/run.py

.PHONY: bench-grpc
bench-grpc: install ## The scorer's gRPC vs REST: 1-row req/s and CPU per request, 1x3x224x224 binary latency
	$(PY) bench/grpc_rest.py

.PHONY: bench-operator
bench-operator: install tools ## N = 100 and 1000 ModelApps on one container vs a no-op kopf operator
	$(PY) bench/operator_scale.py

.PHONY: kind-up
kind-up: install ## With Docker: kind + local registry + Azurite + images + chart + the diabetes example
	bash hack/kind-up.sh up

.PHONY: demo
demo: install cluster-up ## The main job: local cluster + Azurite + the operator rolling out an example model
	$(PY) hack/demo.py

.PHONY: demo-stages
demo-stages: install cluster-up ## The demo, then QA → prod: a version soaks in QA, is approved, reaches prod by digest
	$(PY) hack/demo.py --stages

.PHONY: clean
clean: cluster-down ## Remove .venv and .local (the binary cache in ~/.cache/modelapp stays)
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
