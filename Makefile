# netshift: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
CLUSTER := hack/cluster

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages the tools and tests need (when missing)
	@hack/deps.sh

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## create the virtual environment with netshift and its test dependencies

.PHONY: tools
tools: deps ## build (or reuse cached) etcd, Kubernetes and helm binaries
	hack/lib/build.sh all

.PHONY: cluster-up cluster-down
cluster-up: tools ## start the local control plane
	$(CLUSTER) up
cluster-down: ## stop the local control plane and remove its state
	$(CLUSTER) down

.PHONY: install-crds
install-crds: ## install the CRDs into $$KUBECONFIG (or the local cluster)
	hack/run-operator.sh --crds-only

.PHONY: run
run: deps venv ## set everything up and run the operator (local cluster, or $$KUBECONFIG when set)
	hack/run-operator.sh

.PHONY: test
test: deps venv tools lint test-unit test-conformance test-integration test-dataplane test-e2e test-e2e-kind ## run every test tier (and lint)

.PHONY: test-unit
test-unit: venv ## unit tests (pure code)
	$(PYTEST) tests/unit -m unit

.PHONY: test-conformance
test-conformance: venv tools ## OpenShift's CRD suites against a real kube-apiserver
	$(PYTEST) tests/conformance -m conformance

.PHONY: test-integration
test-integration: venv tools ## the operator against the real control plane
	$(PYTEST) tests/integration -m integration --durations=15

.PHONY: test-dataplane
test-dataplane: deps venv tools ## redirect agent data path: real packets in network namespaces (root; failover: the API server)
	$(PYTEST) tests/dataplane -m dataplane

# The property test of the spec parser runs 150 examples in test-dataplane; this is the larger run.
EXAMPLES ?= 2000
.PHONY: test-properties
test-properties: deps venv ## spec parser vs real CNI plugins and nft, EXAMPLES generated specs (root)
	NETSHIFT_PROPERTY_EXAMPLES=$(EXAMPLES) $(PYTEST) tests/dataplane/test_spec_properties.py -m dataplane \
		--timeout=0 --hypothesis-show-statistics

# kind users run this tier alone (hack/kind-e2e.sh): it needs only the venv and a KUBECONFIG.
PYTEST_ARGS ?=
.PHONY: test-e2e
test-e2e: venv ## end to end: operator from the chart, EgressRouters and Routes with real traffic (docs/e2e.md)
	$(PYTEST) tests/e2e -m e2e --durations=10 $(PYTEST_ARGS)

# The same tier on a kind cluster of three nodes, offline (podman in its own network namespace; root).
.PHONY: test-e2e-kind
test-e2e-kind: deps venv ## e2e tier (and its multi-node scenarios) on a 3-node kind cluster built offline (docs/e2e.md)
	hack/kind-e2e.sh --offline --nodes 3 $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

.PHONY: bench-agent
bench-agent: deps venv ## redirect agent throughput and connections/s vs the direct path (root, ~30 s)
	$(PY) -m tests.bench.bench_agent

.PHONY: bench-egressrouter
bench-egressrouter: venv tools ## EgressRouters at scale: COUNT routers (default 1000) on the local cluster
	$(CLUSTER) up
	$(PY) -m tests.bench.bench_egressrouter --count $(or $(COUNT),1000)

.PHONY: bench-combined
bench-combined: venv tools ## 1,000 EgressRouters after 10,000 Routes in one operator: its RSS (COUNT, ROUTES)
	$(CLUSTER) up
	$(PY) -m tests.bench.bench_egressrouter --count $(or $(COUNT),1000) --routes $(or $(ROUTES),10000)

.PHONY: bench-router
bench-router: deps venv ## Route data plane: requests/s and p99 through the router vs direct (loopback, ~30 s)
	$(PY) -m tests.bench.bench_router --rounds 3

.PHONY: bench-gateway-api-mirror
bench-gateway-api-mirror: venv tools ## the Gateway API mirror at scale: COUNT routes (default 1000), its idle and restart writes
	$(CLUSTER) up
	$(PY) tests/bench/bench_gateway_api_mirror.py --count $(or $(COUNT),1000)

.PHONY: bench-route-admission
bench-route-admission: venv tools ## Route admission at scale: 10,000 routes in 100 namespaces (ARGS="--count 1000 --namespaces 10")
	$(CLUSTER) up
	$(PY) tests/bench/bench_route_admission.py $(ARGS)

# The e2e tier's operator install, external network and client pod, on $$KUBECONFIG's cluster via
# NETSHIFT_TEST_KUBECONFIG, else hack/cluster's (tests/bench/bench_failover.py).
ROUNDS ?= 5
.PHONY: bench-failover
bench-failover: venv ## active/standby EgressRouter: fault -> first new connection through its Service (ROUNDS, default 5)
	kc=$${KUBECONFIG:-}; [ "$$kc" != "$$($(CLUSTER) kubeconfig)" ] || kc=; \
	NETSHIFT_BENCH_FAILOVER=$(ROUNDS) NETSHIFT_TEST_KUBECONFIG=$${NETSHIFT_TEST_KUBECONFIG:-$$kc} \
		$(PYTEST) tests/e2e/test_egressrouter_ha_e2e.py -m e2e -k bench_failover -s --timeout=3600

.PHONY: image
image: deps ## build the image from the Dockerfile (no registry, no daemon) and import it into the local node
	hack/build-image.sh

.PHONY: manifests
manifests: tools ## regenerate charts/netshift/crds and manifests/ from crds/ and the chart
	hack/render-manifests.sh

.PHONY: chart-lint
chart-lint: tools ## helm lint the chart; check that manifests/ and the chart's CRDs are up to date
	"$$($(CLUSTER) bin HELM_BIN)/helm" lint --strict charts/netshift
	hack/render-manifests.sh --check

.PHONY: lint lint-python
lint: deps lint-python chart-lint ## ruff, mypy, shellcheck every script, plus chart-lint
	shellcheck -x -P SCRIPTDIR -S warning hack/cluster hack/*.sh hack/lib/*.sh

lint-python: venv ## ruff (operator, tests, hack) and mypy (operator/netshift), zero findings
	$(VENV)/bin/ruff check operator tests hack
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## remove the virtual environment (caches outside the repo are kept)
	rm -rf $(VENV) *.egg-info operator/*.egg-info
