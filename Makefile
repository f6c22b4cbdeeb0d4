# seqtune — the README's commands.
#   make run     venv + pinned install, then `dvc repro` (data -> train -> evaluate -> register)
#   make test    venv + pinned install, then the whole test suite (fast + slow), as CI runs it
#   make serve   import the champions into BentoML and serve them on 127.0.0.1:3000
#   make bento   build the bento (models + Dockerfile inside)
#   make image   the bento as a container image (podman/buildah, no Docker engine); scripts/image.sh run runs it
#   make bench   the benchmark scripts (print their figures)
#   make tracking  a shared MLflow server on a project-local PostgreSQL (then MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make run)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python

# Offline, quiet, reproducible: the same environment for run, test and CI.
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export BENTOML_HOME ?= $(CURDIR)/bentoml_home
export GIT_AUTHOR_NAME ?= seqtune
export GIT_AUTHOR_EMAIL ?= seqtune@localhost
export GIT_COMMITTER_NAME ?= seqtune
export GIT_COMMITTER_EMAIL ?= seqtune@localhost

.PHONY: install run specialist test test-fast serve bento image bench clean java tracking

# Every package comes from requirements.lock in pip's hash-checking mode (--require-hashes):
# a file whose sha256 the lock does not list is refused, and so is a package it does not pin.
# seqtune itself goes in last with --no-deps and without build isolation (setuptools is in
# the lock), so nothing unhashed is fetched on the way (docs/security.md, Supply chain).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	# pip first, the lock's pip entry as a requirements file (the venv's own pip takes hashes
	# from requirements files only); from then on hashes in the lock bind as constraints too.
	$(PY) -m pip install -q --require-hashes -r <(awk '/^[^ #]/{p=/^pip==/} p' requirements.lock)
	# torch first and pinned: an unpinned resolve pulls a multi-GB CUDA build. The lock pins
	# the CPU wheel on this machine's disk (2.13.0+cpu) by its sha256, and torch's dependencies.
	$(PY) -m pip install -q --require-hashes -c requirements.lock torch
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e '.[dev,bench]'
	$(PY) -m pip check
	touch $@

install: $(VENV)/.installed java

java:
	@command -v java >/dev/null || { echo "OPSIN needs Java: install it, e.g. 'sudo apt-get install -y default-jre-headless'"; exit 1; }

run: install
	@[ -d .git ] || git init -q
	@[ -d .dvc ] || dvc init -q
	dvc repro
	seqtune registry list

# The `specialist` profile (issue 11): small molecules (BRICS fragments of MOSES, <= 15 heavy
# atoms), the shortest prompt (plain), completion-only logits, 74-102 min of training per task on 2 CPU
# cores with bf16. One DVC experiment per task because n_train/epochs differ per task; each
# registers its own champion (a workspace experiment: params.yaml keeps its values after). `make specialist SPECIALIST_TASKS=smiles2iupac` runs one.
SPECIALIST_COMMON := -S molecules.source=moses -S molecules.fragments=brics -S molecules.max_raw=30000 \
	-S molecules.split_level=fragment -S molecules.val_fraction=0.0 \
	-S molecules.max_heavy_atoms=15 -S data.format=plain -S data.n_test=1000 -S train.batch_size=32 \
	-S train.save_steps=200 -S train.val_size=128 -S evaluate.n_eval=500 -S evaluate.max_new_tokens=48 -S evaluate.decoding=greedy
SPECIALIST_smiles2iupac := -S data.n_train=16000 -S train.epochs=2
SPECIALIST_smiles2formula := -S data.n_train=22000 -S train.epochs=2
SPECIALIST_iupac2smiles := -S data.n_train=10000 -S train.epochs=2
SPECIALIST_TASKS ?= smiles2iupac smiles2formula iupac2smiles

specialist: install
	@[ -d .dvc ] || dvc init -q
	$(foreach t,$(SPECIALIST_TASKS),dvc exp run -S 'tasks=[$(t)]' $(SPECIALIST_COMMON) $(SPECIALIST_$(t)) && ) true
	seqtune registry list

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

serve: install
	seqtune bento import
	# host and port: params.yaml `serve` (127.0.0.1:3000); see service/README.md
	bentoml serve service.service:Seqtune

bento: install
	seqtune bento import
	# build context = repo root: the bento carries params.yaml and src/seqtune too
	bentoml build -f service/bentofile.yaml .

# mlflow server on 127.0.0.1:5000 with a PostgreSQL cluster of the project's own in .tracking/
# (params.yaml `tracking_server`); Ctrl-C stops both. In another shell:
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make run
tracking: install
	seqtune tracking-server

# A local Debian base image (python3.11, JRE, CPU torch), the bento built over it
# (service/bentofile-image.yaml) and `bentoml containerize --backend buildah`; root, and
# `apt-get install -y podman buildah mmdebstrap runc`. See scripts/image.sh.
image: install
	seqtune bento import
	PY=$(PY) scripts/image.sh build

bench: install
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf data/* metrics plots mlflow.db mlartifacts bentoml_home build
