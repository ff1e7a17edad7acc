# syntax=docker/dockerfile:1
# atlantis-lock-proxy: multi-stage build, slim non-root runtime.
# The cargo steps below are exercised without Docker by scripts/check-dockerfile-build.sh.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# 1) Dependencies only, cached while Cargo.toml/Cargo.lock are unchanged: build against stub sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && for b in $(awk '/^\[\[bench\]\]/{b=1;next} b&&/^name/{gsub(/.*= *"|"/,"");print;b=0}' Cargo.toml); do echo 'fn main() {}' > "benches/$b.rs"; done \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --locked --bin atlantis-lock-proxy \
 && rm -rf src benches tests
# 2) The real sources.
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin atlantis-lock-proxy \
 && strip target/release/atlantis-lock-proxy

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /src/target/release/atlantis-lock-proxy /usr/local/bin/atlantis-lock-proxy
COPY config/atlantis-lock-proxy.example.yaml /etc/atlantis-lock-proxy/config.yaml
USER 10001
# Main listener (Atlantis's usual port: VCS webhooks point here) and the admin listener.
EXPOSE 4141 9464
# The admin listener must listen beyond loopback inside a container, so a token is required
# (ALP_ADMIN_TOKEN). Mount your own config over /etc/atlantis-lock-proxy/config.yaml.
ENV ALP_CONFIG=/etc/atlantis-lock-proxy/config.yaml \
    ALP_LISTEN=0.0.0.0:4141 \
    ALP_ADMIN_LISTEN=0.0.0.0:9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/atlantis-lock-proxy"]
CMD ["serve"]
