# Two commands for a newcomer: `make demo` and `make test`. Each installs
# libtorch 2.13.0 when missing (scripts/libtorch.sh), then builds.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Exports LIBTORCH (and VPD_TORCH_PYTHON) for cargo and the tests.
TORCH_ENV = torch_env="$$(bash scripts/libtorch.sh)"; eval "$$torch_env"

.PHONY: all libtorch chromium slurm build demo test fmt clippy check

all: build

## libtorch: install torch==2.13.0 into the cache venv unless present
libtorch:
	@$(TORCH_ENV); echo "libtorch: $$LIBTORCH"

## build: the release binary target/release/vpd (rpath to libtorch)
build:
	$(TORCH_ENV); $(CARGO) build --release --locked --bin vpd

## demo: build and run the main job: the quickstart experiment (data,
## pre-training, distillation of the VQA student on GQA, both tasks
## evaluated) in the default store `store/`
demo: build
	$(TARGET_DIR)/release/vpd run experiments/quickstart.toml

## chromium: Debian's chromium for the report's browser test, unless present
chromium:
	@bash scripts/chromium.sh

## slurm: Debian's Slurm and munge for the cluster test, unless present
## (the test starts a one-node cluster on loopback and stops it by PID)
slurm:
	@bash scripts/slurm.sh install

## test: formatting, clippy -D warnings, the whole test suite
test: chromium slurm
	$(TORCH_ENV); \
	$(CARGO) fmt --all --check; \
	$(CARGO) clippy --release --locked --all-targets -- -D warnings; \
	$(CARGO) test --release --locked

fmt:
	$(CARGO) fmt --all

clippy:
	$(TORCH_ENV); $(CARGO) clippy --release --locked --all-targets -- -D warnings
