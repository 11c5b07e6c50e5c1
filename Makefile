# opsync: common tasks. `make test` is what CI runs (after fmt and clippy, see .ci/run).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/tmp/opsync-target
# The local services unless the environment names others (tests create their own database and
# vhost on these servers and remove them afterwards).
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f
BIN := $(CARGO_TARGET_DIR)/debug
RELEASE_BIN := $(CARGO_TARGET_DIR)/release

.PHONY: build test lint fmt verify-demo demo bench release services

build:
	cargo build --workspace

# Every test: unit, property and end-to-end (the e2e tests run the built binaries, so build
# them first).
test:
	cargo build --workspace --bins
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

release:
	cargo build --workspace --release --bins

# `opsync verify` against the bridge emulator with a few hundred users.
verify-demo: build
	@bash scripts/verify-demo.sh "$(BIN)"

# The whole product on this machine: emulator -> worker -> Postgres + RabbitMQ, narrated.
demo: build services
	@$(BIN)/demo

# Postgres and RabbitMQ: the local services when they answer; otherwise, on a machine with
# Docker, the ones in docker-compose.yml.
services:
	@bash scripts/services.sh

# Performance figures for 100,000 users against their floors (release build).
bench: release services
	@$(RELEASE_BIN)/bench
