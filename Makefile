# One target per task; CI (.ci/run) calls `make test` exactly as a developer does.
# Every target runs `setup` first; setup is quick when nothing changed (stamps and caches).

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3
MANIFEST ?= examples/storefleet.yaml
# Extra options of `storefleet up`, e.g. UP_ARGS="--duration 120 --state-dir /tmp/sf".
UP_ARGS ?=
PYTEST_ARGS ?=
# Options of the cluster tests' pytest run (make test, make cluster-test), e.g. "-x".
CLUSTER_PYTEST_ARGS ?=
# Extras of the storefleet package installed into .venv: every component's dependencies.
EXTRAS := dev,operator,spark,dashboard

.PHONY: setup system-packages python jars tools images up test lint bench clean \
	cluster-tools cluster-up cluster-down cluster-test

## setup: everything a fresh machine needs (Debian packages, .venv, jars, Go-built tools)
setup: system-packages python jars tools

system-packages:
	scripts/install-system-packages.sh

python: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

jars:
	tools/kafka/install.sh
	tools/spark/fetch-jars.sh

## tools: Go-built helm, kubeconform, kubectl, kube-apiserver, kube-controller-manager, etcd,
## controller-gen and the kubeflow spark-operator binary (tools/spark-operator/install.sh)
tools:
	tools/kube/install.sh
	tools/spark-operator/install.sh

## images: build every image with buildah from local Debian bases (no registry needed) and save
## docker-archives for the test node (docs/images.md); IMAGES="spark redis" builds only those.
IMAGES ?=
images: cluster-tools
	tools/images/build.sh --save $(IMAGES)

## cluster-tools: Debian packages and Go-built binaries/images of the test cluster (tools/cluster)
cluster-tools:
	scripts/install-cluster-packages.sh
	tools/cluster/install.sh

## cluster-up / cluster-down: a real single-node Kubernetes on this machine (root); up prints
## its kubeconfig path, down removes it and restores the host
cluster-up: cluster-tools
	tools/cluster/up

cluster-down:
	tools/cluster/down

## cluster-test: the cluster tests (tests/cluster): a node brought up and down by them, the
## chart installed from the locally built images, a fleet run, scaled and removed
cluster-test: python cluster-tools images
	$(BIN)/pytest -m cluster tests/cluster $(CLUSTER_PYTEST_ARGS)

## up: the whole platform locally from $(MANIFEST), until Ctrl-C
# The platform needs no Kubernetes tools, so `up` skips building them.
up: system-packages python jars
	$(BIN)/storefleet up -f $(MANIFEST) $(UP_ARGS)

## test: lint, then every test (unit, integration on real services, kubernetes, e2e, images),
## then the cluster tests on a real node (what `make cluster-test` runs)
test: setup lint cluster-tools images
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest -m cluster tests/cluster $(CLUSTER_PYTEST_ARGS)

lint: python
	$(BIN)/ruff check .

## bench: every benchmark, one JSON object per line
bench: setup
	$(BIN)/storefleet bench all --json

clean:
	rm -rf .storefleet
