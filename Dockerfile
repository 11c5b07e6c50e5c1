# opsync: multi-stage build. The dependency layer is cached on Cargo.toml/Cargo.lock alone, so a
# code change rebuilds only the workspace crates.
# Base images pinned by version (pin by digest in your registry mirror as well).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config perl make gcc g++ \
    && rm -rf /var/lib/apt/lists/*
# 1. Dependencies only: manifests plus empty crate roots.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN mkdir -p shared/src worker/src tests/src/bin schemas/sql \
    && echo "" > shared/src/lib.rs && echo "fn main() {}" > worker/src/main.rs \
    && echo "" > tests/src/lib.rs \
    && for b in mock-bridge demo bench; do echo "fn main() {}" > tests/src/bin/$b.rs; done \
    && cargo build --release -p opsync-worker \
    && rm -rf shared/src worker/src tests/src
# 2. The code.
COPY shared shared
COPY worker worker
COPY schemas schemas
COPY tests tests
RUN touch shared/src/lib.rs worker/src/main.rs && cargo build --release -p opsync-worker \
    && install -m 0755 target/release/opsync /usr/local/bin/opsync

FROM debian:bookworm-20241016-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 opsync && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin opsync
COPY --from=build /usr/local/bin/opsync /usr/local/bin/opsync
USER 10001:10001
EXPOSE 8080
ENV OPSYNC_LOG_FORMAT=json OPSYNC_HEALTH_ADDR=0.0.0.0:8080
# Liveness only: readiness depends on the broker and database and is for the orchestrator.
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/opsync", "--version"]
ENTRYPOINT ["/usr/local/bin/opsync"]
CMD ["worker"]
