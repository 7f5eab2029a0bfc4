# shiftwatch: every target sets itself up (a fresh machine needs nothing else).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SW := $(VENV)/bin/shiftwatch
STAMP := $(VENV)/.installed
# No outbound calls at run time: BentoML usage tracking, Evidently and onnxruntime telemetry off.
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export EVIDENTLY_DISABLE_TELEMETRY := 1
# onnxruntime's own telemetry (on by default on Linux since 1.29), read when it is imported.
export ORT_DISABLE_TELEMETRY := 1
# The BentoML model store (and built Bentos) live inside the project, not in ~/bentoml.
export BENTOML_HOME ?= $(CURDIR)/artifacts/bentoml
PORT ?= 3000
BUNDLES := $(foreach v,baseline research no_pe,artifacts/models/$(v)/manifest.json)

.PHONY: setup servers test test-unit reliability lint format reproduce reproduce-quick export models serve build demo deployment-report clean

setup: $(STAMP)

# torch first, from the CPU wheel on disk (any other spec pulls a multi-GB CUDA build),
# then the project with its dev extras, constrained to the image's lock so the tests run
# the versions the container ships. Reruns when pyproject.toml or the lock changes.
IMAGE_LOCK := deploy/python/monitor.lock.txt
$(STAMP): pyproject.toml $(IMAGE_LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]" -c $(IMAGE_LOCK)
	touch $@

# The images' pinned environments, from deploy/python/*.in, for Linux x86_64 and Python 3.11
# (3.11.7, the tests' interpreter; no marker differs from the images' 3.11): the monitor image's
# first, then the serving images' (CPU, GPU) under it, so both images pin the same versions
# (onnxruntime aside: the monitor image keeps the serving image's, CPU or GPU).
# Needs the package index; commit the result.
LOCK_ARGS := --python-version 3.11.7 --python-platform x86_64-manylinux_2_28 --quiet
.PHONY: lock
lock: setup
	$(VENV)/bin/uv pip compile deploy/python/monitor.in $(LOCK_ARGS) -o $(IMAGE_LOCK)
	$(VENV)/bin/uv pip compile deploy/python/serving.in $(LOCK_ARGS) -c $(IMAGE_LOCK) \
		-o deploy/python/serving.lock.txt
	$(VENV)/bin/uv pip compile deploy/python/serving-gpu.in $(LOCK_ARGS) -c $(IMAGE_LOCK) \
		-o deploy/python/serving-gpu.lock.txt

# The real servers the tests run against (CI runs as root on a fresh Debian machine), each
# Debian's package, installed once: prometheus and promtool (deploy/), redis-server (the fleet
# transport), haproxy (the fleet's load balancer config). A test fails when one is missing.
SERVERS := prometheus promtool redis-server haproxy
servers:
	@for tool in $(SERVERS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus redis-server haproxy; fi

# pytest exits 5 when it collects no test: that is a failure here, never a pass.
test: setup servers
	$(PY) -m pytest -q -m "not reliability and not containers"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The unit tier alone: in-process, no server, no training (under 2 minutes on 2 cores).
test-unit: setup
	$(PY) -m pytest -q -m unit; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-unit: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Overload, monitor kill -9, SIGTERM under load (real processes under load, minutes each).
reliability: setup
	$(PY) -m pytest -q -m reliability; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make reliability: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The real dataset: docstring sections of the installed (pinned) packages, built once.
DOCSTRINGS := artifacts/data/docstrings
$(DOCSTRINGS)/manifest.json: $(STAMP)
	$(SW) data --source docstrings --out $(DOCSTRINGS)

# The study at full size (3 variants x 5 seeds) on the embedded dataset and the real one:
# regenerates docs/results.md (both side by side) and docs/results/<dataset>/.
reproduce: setup $(DOCSTRINGS)/manifest.json
	$(SW) reproduce --profile paper --data embedded --data $(DOCSTRINGS) --out docs

reproduce-quick: setup $(DOCSTRINGS)/manifest.json
	$(SW) reproduce --profile quick --data embedded --data $(DOCSTRINGS)

# ONNX bundles (with int8) of every variant's seed-0 run, registered in the BentoML store.
export: setup
	$(SW) export --all --quantize

# The embedded default bundles, exported only when missing (or from before bundles carried
# their manifest.json), from the seed-0 runs: those of `make reproduce` when they exist, else
# trained now with the quick profile.
SEED0_RUNS := $(foreach v,baseline research no_pe,artifacts/runs/embedded/$(v)/0/checkpoint.pt)
models: setup
	@if ls $(BUNDLES) >/dev/null 2>&1; then echo "bundles present: $(BUNDLES)"; \
	else (ls $(SEED0_RUNS) >/dev/null 2>&1 || $(SW) reproduce --profile quick) && \
		$(SW) export --all --quantize; fi

# The service on loopback: primary baseline, shadows research and no_pe (SHIFTWATCH_* to change).
serve: models
	$(SW) serve --port $(PORT)

# A Bento with the configured bundles (SHIFTWATCH_PRIMARY_MODEL / SHIFTWATCH_SHADOW_MODELS;
# default baseline, research, no_pe), ready for `bentoml containerize` where Docker runs.
build: models
	$(VENV)/bin/bentoml build

# The main job on the embedded defaults: bundles (trained and exported when missing), then
# the service (primary baseline, shadows research and no_pe) and the monitor on loopback,
# every shift scenario replayed, the degradation table printed; artifacts/demo/ holds the
# timelines, Evidently reports and deployment.md. Both processes stop on exit or Ctrl-C.
# On your own data: `make demo DATA=file.jsonl [BEFORE=split=test] [AFTER=split=ood]`
# (trains the quick profile on it, or reuses finished runs; models named <data>-<variant>).
DATA ?=
BEFORE ?= split=test
AFTER ?= split=ood
ifeq ($(strip $(DATA)),)
demo: models
	$(SW) demo --out artifacts/demo
else
demo: setup
	$(SW) demo --out artifacts/demo --data "$(DATA)" --before "$(BEFORE)" --after "$(AFTER)"
endif

# docs/deployment.md and its figures, from a full replay run; then the same on the real
# dataset (its bundles trained with the quick profile when missing): deployment-docstrings.md.
deployment-report: models $(DOCSTRINGS)/manifest.json
	$(SW) demo --out artifacts/demo --docs docs
	$(SW) demo --out artifacts/demo-docstrings --docs docs --data $(DOCSTRINGS) --after split=ood

clean:
	rm -rf artifacts build

# Container images (README "Deployment"). ENGINE: podman where it is installed, else docker.
# `make image`: a Bento, then the serving image (IMAGE, `bentoml containerize`) and the monitor
# image on top of it (MONITOR_IMAGE, deploy/images/monitor.Containerfile). BASE_IMAGE swaps the
# bentofile's python:3.11-slim for one build: where no registry answers, `make base-image` first
# and `make image BASE_IMAGE=shiftwatch-base:bookworm`.
ENGINE ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE ?= shiftwatch:latest
MONITOR_IMAGE ?= shiftwatch-monitor:latest
BASE_IMAGE ?=
BASE_TAG := shiftwatch-base:bookworm
.PHONY: image base-image standin-images container-engine test-containers bench-images
image: models
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" deploy/images/build-images.sh $(ENGINE) $(IMAGE) $(MONITOR_IMAGE) $(BASE_IMAGE)

# Debian 12 + Python 3.11 from Debian's packages (debootstrap, as root), trusting the host's CA
# bundle: the base for a machine that cannot pull python:3.11-slim.
base-image:
	deploy/images/build-base.sh $(ENGINE) $(BASE_TAG)

# Local stand-ins for the third-party images the compose files name (Redis, HAProxy, Prometheus),
# built on that base from Debian's packages; deploy/standins.yml and standins.fleet.yml select them.
standin-images:
	@$(ENGINE) image inspect $(BASE_TAG) >/dev/null 2>&1 || $(MAKE) base-image
	for name in redis haproxy prometheus; do \
		$(ENGINE) build --network host --build-arg BASE_IMAGE=$(BASE_TAG) \
			-f deploy/images/standins/$$name.Containerfile -t shiftwatch-standin-$$name:latest \
			deploy/images/standins || exit 1; done

# Benchmarks behind DESIGN.md's targets; each writes its own section of docs/benchmarks.md.
# `make bench` runs them all in one go (~75 min on 2 cores, most of it the paper-profile
# reproductions on both datasets); run it on an otherwise idle machine. Extra flags through BENCH_ARGS, e.g.
# `make bench-inference BENCH_ARGS="--quick --threads 4"`.
# Image sizes, a full rebuild's time, cold starts and the container's /predict p50 against the
# same Bento on the host (podman; the Debian base where no registry answers; ~6 min).
bench-images: setup models container-engine
	export CONTAINERS_CONF=$(CONTAINERS_CONF_FILE); \
	{ podman image exists $(BASE_TAG) || $(MAKE) base-image ENGINE=podman; } && \
	$(PY) -m benchmarks.bench_images --engine podman --base-image $(BASE_TAG) $(BENCH_ARGS)

.PHONY: bench bench-inference bench-service bench-workers bench-monitor bench-soak bench-estimation bench-reproduction bench-reproduction-docstrings
bench: bench-inference bench-service bench-workers bench-monitor bench-soak bench-estimation bench-reproduction bench-reproduction-docstrings

# torch eager vs onnxruntime fp32 vs int8 on a batch x seq grid (~5 min on 2 cores).
bench-inference: setup models
	$(PY) -m benchmarks.bench_inference $(BENCH_ARGS)

# HTTP /predict of five server configurations (default, redis transport, batching off, event
# log off, no shadows), each a `bentoml serve` on loopback, the redis transport's against a
# redis-server the benchmark starts, next to a bare onnxruntime + Starlette/uvicorn server
# (benchmarks/bare_server.py, the same model) and session.run (~3 min on 2 cores).
bench-service: setup models servers
	$(PY) -m benchmarks.bench_service $(BENCH_ARGS)

# Drift over a 10k-event window; ingest from files and from Redis, the Redis writer and stream
# memory (a redis-server it starts); also the generated section of docs/scaling.md (~30 s).
# The service at 1 and 2 workers against the bare server at 1 and 2 processes (~3 min).
bench-workers: setup models
	$(PY) -m benchmarks.bench_workers $(BENCH_ARGS)

bench-monitor: setup models servers
	$(PY) -m benchmarks.bench_monitor

# Every label-free estimator against realised accuracy: each built-in scenario and the real
# docstrings dataset through the live stack, at two label delays (~15 min on 2 cores; trains
# and exports the docstrings bundles with the quick profile first when missing).
bench-estimation: setup models $(DOCSTRINGS)/manifest.json
	$(PY) -m benchmarks.bench_estimation $(BENCH_ARGS)

# A simulated day at 50 requests/s (labels, two shadows) through a real monitor process: state
# size and RSS per simulated hour, with the default bounds (~15 min on 2 cores).
bench-soak: setup models
	$(PY) -m benchmarks.bench_soak $(BENCH_ARGS)

# `shiftwatch reproduce` timed per profile, into a scratch folder (docs/results.md untouched):
# quick then paper by default; `BENCH_ARGS="--profile quick"` for the 5-minute one alone.
bench-reproduction: setup
	$(PY) -m benchmarks.bench_reproduction $(BENCH_ARGS)

# The paper profile on the real docstring dataset against the same 30-min budget (~20 min).
bench-reproduction-docstrings: setup $(DOCSTRINGS)/manifest.json
	$(PY) -m benchmarks.bench_reproduction --profile paper --data $(DOCSTRINGS)

# A container engine on a Debian machine, as root (CI's kind): podman with runc (crun refuses
# hybrid cgroup layouts), netavark, aardvark-dns and iptables (service names resolve in a compose
# network; published ports), catatonit (a pod's infra container), debootstrap (the Debian base)
# and chromium (the /report test). tests/containers/containers.conf holds the engine settings.
CONTAINER_PACKAGES := podman runc netavark aardvark-dns iptables catatonit debootstrap chromium
CONTAINERS_CONF_FILE := $(CURDIR)/tests/containers/containers.conf
container-engine:
	@dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(CONTAINER_PACKAGES) >/dev/null; }

# The deployment run for real (tests/containers, ~10 min on 2 cores with the images built;
# more the first time: the default models and the Debian base): the images built from this
# checkout on the Debian base with the stand-ins (what a machine without a registry can run),
# then the single-machine stack, the fleet and the sidecar pod under podman.
test-containers: setup models container-engine
	export CONTAINERS_CONF=$(CONTAINERS_CONF_FILE); \
	$(MAKE) standin-images image ENGINE=podman BASE_IMAGE=$(BASE_TAG) || exit 1; \
	$(PY) -m pytest -q -m containers tests/containers; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-containers: pytest collected no tests" >&2; exit 1; fi; exit $$rc
