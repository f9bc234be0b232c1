# syntax=docker/dockerfile:1.7
#
# The production image of todo-host: the release binary plus the built-in
# plugins (postgres-store, audit-log, notifier) in /var/lib/todo-host/plugins
# and the browser app in /usr/share/todo-host/web.
#
#   DOCKER_BUILDKIT=1 docker build -t todo-host:latest .
#
# BuildKit is required (cache mounts). Base images are pinned to a release
# tag; pin them by digest as well (rust:1.95.0-bookworm@sha256:…) where
# builds must be bit-for-bit repeatable. Validated by scripts/check-deploy
# (hadolint); docs/operations.md explains how the image is run.

# ---------------------------------------------------------------------------
# Builder: Rust 1.95 (the workspace's rust-version) on Debian 12. The image
# already carries what librdkafka's bundled build needs (gcc, make, perl,
# pkg-config, zlib headers) and what OpenSSL's build from source needs, so
# nothing is installed with apt here.
FROM rust:1.95.0-bookworm AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A layer of its own, so a source change does not download the target again.
RUN rustup target add wasm32-wasip2

WORKDIR /src
COPY . .

# The plugins: scripts/build-plugins is the one definition of how a plugin
# is built and installed (NAME.wasm from the crate's `_` file name, NAME.toml
# from the crate) — the same script the tests and scripts/run-local use.
# The target directory is a cache mount, so the result is copied out to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/cache/plugins-target,sharing=locked \
    PLUGINS_TARGET_DIR=/cache/plugins-target scripts/build-plugins /out/plugins \
    && chmod 0644 /out/plugins/*

# The host: release build of the todo-host package with the committed lock
# file, OpenSSL (librdkafka's TLS) linked in statically.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/cache/target,sharing=locked \
    CARGO_TARGET_DIR=/cache/target cargo build --locked --release -p todo-host --features vendored-openssl \
    && install -D -m 0755 /cache/target/release/todo-host /out/todo-host

# ---------------------------------------------------------------------------
# The browser app (web/): its locked dependencies, then the Vite build. Node
# is only needed here; the host serves the result (WEB_DIR). No browser is
# downloaded (Playwright is for the tests).
FROM node:20.20.2-bookworm-slim AS web

WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run check && npm run build

# ---------------------------------------------------------------------------
# Runtime: Debian 12 slim (same glibc as the builder). The binary needs
# only glibc, libgcc and zlib, which the slim image has; nothing is installed
# with apt (so no unpinned packages). The CA bundle is copied from the
# builder (which has Debian's ca-certificates) for any TLS endpoint.
FROM debian:12.12-slim AS runtime

LABEL org.opencontainers.image.title="todo-host" \
      org.opencontainers.image.description="Task REST API whose storage and event handling are WebAssembly plugins" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, non-root UID/GID (10001): Kubernetes' runAsUser/fsGroup in k8s/
# and volume ownership rely on it. The server installs uploaded plugins into
# the plugin directory (PUT /admin/plugins/NAME), so it may write there; the
# compiled-plugin cache must be writable by the server alone (wasmtime loads
# native code from it).
RUN groupadd --system --gid 10001 todo-host \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin todo-host \
    && install -d -o root -g root -m 0755 /var/lib/todo-host \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/todo-host/plugins \
    && install -d -o 10001 -g 10001 -m 0700 /var/cache/todo-host

COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/todo-host /usr/local/bin/todo-host
COPY --from=builder /out/plugins/ /var/lib/todo-host/plugins/
COPY --from=web /web/dist/ /usr/share/todo-host/web/

# SSL_CERT_FILE: the statically linked OpenSSL (librdkafka's) looks for
# its roots under its own build prefix otherwise, and would trust no broker.
ENV TODO_LISTEN=0.0.0.0:8080 \
    PLUGIN_DIR=/var/lib/todo-host/plugins \
    PLUGIN_CACHE_DIR=/var/cache/todo-host \
    WEB_DIR=/usr/share/todo-host/web \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 10001:10001
EXPOSE 8080

# No HEALTHCHECK: Kubernetes probes GET /health/live and /health/ready (see
# k8s/app.yaml), docker-compose.yml declares its own check, and the same
# image also runs one-shot commands (`migrate`, `user create`) that a
# built-in check would mark unhealthy.
ENTRYPOINT ["todo-host"]
CMD ["serve"]
