# syntax=docker/dockerfile:1
#
# gateway-api images, one build:
#   docker build --build-arg GIT_SHA=$(git rev-parse HEAD) \
#                --build-arg SOURCE_URL=$(git remote get-url origin) -t gateway-api .    # production
#   docker build --target mock-upstream -t gateway-api-mock-upstream .               # the mocks
#
# The production image (`runtime`, the last stage, the default target) holds only the stripped
# `gateway` binary; `mock-upstream` lives in a stage of its own that docker-compose builds for
# the mock reservation and payment APIs.
#
# Build args: GIT_SHA (and GIT_DIRTY) are what /version and `gateway --version` show, since .git
# is not in the build context (vergen reads VERGEN_GIT_SHA / VERGEN_GIT_DIRTY); GIT_SHA, VERSION
# (Cargo.toml's; scripts/validate_deploy.py checks they agree) and SOURCE_URL fill the OCI labels.
# SOURCE_DATE_EPOCH, when given, fixes the build time (reproducible builds).

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78
ARG VERSION=0.1.0
ARG GIT_SHA=unknown
ARG SOURCE_URL=

# --- chef: the toolchain plus cargo-chef ---------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src
# Stripped, no debug info: the image ships no symbols (the release profile keeps line tables for
# local profiling). Set for the dependencies too, so the cooked layer matches the final build.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=false

# --- planner: the dependency recipe, which changes only with Cargo.toml / Cargo.lock ---------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies (a cached layer while the recipe is unchanged), then the crate ---------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin gateway --bin mock-upstream
COPY . .
ARG GIT_SHA
ARG GIT_DIRTY=false
ARG SOURCE_DATE_EPOCH
ENV VERGEN_GIT_SHA=${GIT_SHA} VERGEN_GIT_DIRTY=${GIT_DIRTY} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
RUN set -eux; \
    cargo build --release --locked --bin gateway --bin mock-upstream; \
    mkdir -p /out; \
    cp target/release/gateway target/release/mock-upstream /out/

# --- mock-upstream: the fake reservation and payment APIs (docker-compose, never production) ------
# distroless/cc: glibc + libgcc + CA certificates, no shell, no package manager; `nonroot` = 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS mock-upstream
ARG VERSION
ARG GIT_SHA
ARG SOURCE_URL
LABEL org.opencontainers.image.title="gateway-api-mock-upstream" \
      org.opencontainers.image.description="Mock reservation and payment APIs for gateway-api (development and tests only)" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.version="${VERSION}"
# `gateway --healthcheck` probes /healthz on $PORT: the mock's health check (no curl here).
COPY --from=builder /out/mock-upstream /out/gateway /usr/local/bin/
USER 65532:65532
ENV PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/gateway", "--healthcheck"]
CMD ["/usr/local/bin/mock-upstream", "--role", "reservation", "--port", "8081"]

# --- runtime: the production image (default target) -----------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION
ARG GIT_SHA
ARG SOURCE_URL
LABEL org.opencontainers.image.title="gateway-api" \
      org.opencontainers.image.description="Ticket-booking API gateway: JWT, rate limits, waiting room, idempotent writes, proxy" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/gateway /usr/local/bin/
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No curl in the image: the binary checks its own /healthz on $PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/gateway", "--healthcheck"]
# Exec form: the gateway is PID 1 and receives SIGTERM itself (graceful shutdown, SPEC §9).
CMD ["/usr/local/bin/gateway"]
