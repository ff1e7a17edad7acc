# syntax=docker/dockerfile:1
# atlantis-lock-proxy: multi-stage build (dependencies cached in their own layer), slim non-root
# runtime holding only the binary and the example config.
#
#   docker build -t atlantis-lock-proxy .
#   docker run -e ALP_ADMIN_TOKEN=... -e ALP_UPSTREAM=http://atlantis:4142 -e ALP_REDIS_ADDR=redis:6379 \
#     -v $PWD/my-config.yaml:/etc/atlantis-lock-proxy/config.yaml:ro -p 4141:4141 atlantis-lock-proxy
# (the engine connects to Redis at start; ALP_ENHANCED_LOCKING__BACKEND=memory runs without it)
#
# No Docker engine runs where this project is developed: scripts/check-dockerfile-build.sh runs
# the same stub step and the same cargo commands outside Docker (and fails if they drift apart
# from the lines below), and tests/it/deploy.rs checks every port, path and ALP_* variable here.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Symbols are stripped by cargo (not by the release profile, which benches share).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# 1) Dependencies only: this layer (registry and compiled dependencies) is reused until
#    Cargo.toml, Cargo.lock or the stub script change. Every target the manifest
#    declares (lib, bin, each [[bench]] and [[test]]) gets a placeholder file first, because
#    cargo rejects a manifest whose target files are missing.
COPY Cargo.toml Cargo.lock ./
COPY scripts/stub-sources.sh scripts/stub-sources.sh
RUN sh scripts/stub-sources.sh \
 && cargo build --release --locked --bin atlantis-lock-proxy \
 && rm -rf src
# 2) The real sources. The placeholder benches and tests stay: the binary does not need the real
#    ones, so editing a test does not rebuild the image. The two entry files are touched because
#    the copied sources may be older than the placeholder build and cargo compares mtimes.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin atlantis-lock-proxy \
 && install -D -m 0755 target/release/atlantis-lock-proxy /out/atlantis-lock-proxy

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# curl only for the HEALTHCHECK; TLS roots toward VCS APIs are compiled in (webpki-roots).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 proxy \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /out/atlantis-lock-proxy /usr/local/bin/atlantis-lock-proxy
COPY config/atlantis-lock-proxy.example.yaml /etc/atlantis-lock-proxy/config.yaml
USER 10001:10001

# 4141: main listener, Atlantis's usual port, where VCS webhooks point (publish it).
# 9464: admin listener: /healthz, /readyz, /metrics and the bearer-token /admin/* API
#       (reach it from Prometheus and operators only; never publish it to the internet).
EXPOSE 4141 9464

# Configuration: mount a file over /etc/atlantis-lock-proxy/config.yaml (the example is there by
# default) and/or set ALP_* variables, which win over the file (README "Configuration").
# Inside a container both listeners must listen beyond loopback, so the admin API needs a token:
# the proxy refuses to start (exit 2, naming admin.token) until ALP_ADMIN_TOKEN is set.
ENV ALP_CONFIG=/etc/atlantis-lock-proxy/config.yaml \
    ALP_LISTEN=0.0.0.0:4141 \
    ALP_ADMIN_LISTEN=0.0.0.0:9464

# /healthz is open (no token) and answers 200 while the process runs. If you move the admin
# port with ALP_ADMIN_LISTEN, override this check too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9464/healthz"]

# SIGTERM (docker stop, Kubernetes) drains in-flight requests for server.drain-period, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/atlantis-lock-proxy"]
CMD ["serve"]
