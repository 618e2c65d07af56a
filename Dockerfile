# syntax=docker/dockerfile:1
#
# gateway-api image: both binaries (`gateway`, `mock-upstream`) on a distroless runtime.
#
#   docker build --build-arg GIT_SHA=$(git rev-parse --short=12 HEAD) -t gateway-api .
#
# GIT_SHA is baked into /version by build.rs (.git is not in the build context).
# SOURCE_DATE_EPOCH, when given, fixes the baked build time (reproducible builds).

ARG RUST_VERSION=1.95

# --- build --------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only: this layer is rebuilt when Cargo.toml or Cargo.lock change, not when the
#    sources do. Every target the manifest names gets an empty stub so cargo accepts the manifest.
COPY Cargo.toml Cargo.lock ./
COPY scripts/docker-stubs.sh /usr/local/bin/docker-stubs
RUN set -eux; \
    docker-stubs; \
    cargo build --release --locked --bin gateway --bin mock-upstream; \
    rm -rf src benches tests examples

# 2. The crate itself. Touch the roots so their mtimes are newer than the stub build's outputs.
COPY . .
ARG GIT_SHA=unknown
ARG SOURCE_DATE_EPOCH
ENV GIT_SHA=${GIT_SHA} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
RUN set -eux; \
    touch build.rs src/main.rs src/lib.rs src/bin/mock-upstream.rs; \
    cargo build --release --locked --bin gateway --bin mock-upstream; \
    mkdir -p /out; \
    cp target/release/gateway target/release/mock-upstream /out/

# --- runtime ------------------------------------------------------------------------------------
# distroless/cc: glibc + libgcc + CA certificates, no shell, no package manager; `nonroot` = 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="gateway-api" \
      org.opencontainers.image.description="Ticket-booking API gateway (gateway) and mock upstreams (mock-upstream)"
COPY --from=builder /out/gateway /out/mock-upstream /usr/local/bin/
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No curl in the image: the binary checks its own /healthz on $PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/gateway", "--healthcheck"]
# Exec form: the gateway is PID 1 and receives SIGTERM itself (graceful shutdown, SPEC §9).
# The mocks run from the same image with another command (see docker-compose.yml).
CMD ["/usr/local/bin/gateway"]
