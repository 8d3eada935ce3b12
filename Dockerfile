# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
# librdkafka is compiled from source by rdkafka's build script (configure + make),
# so the builder needs a C toolchain and the headers of what it links: OpenSSL,
# Cyrus SASL, zlib. Postgres TLS and JWKS fetches use rustls (ring): no cmake.
FROM rust:1.95-bookworm AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev libsasl2-dev zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
# Compile-time checked queries (if any) use the committed .sqlx data, not a live database.
ENV SQLX_OFFLINE=true
# --locked: the image is built from exactly the reviewed Cargo.lock. The
# cache mounts keep the registry and the compiled dependencies between
# builds, so a source change rebuilds the hub, not librdkafka.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/app/target \
    cargo build --release --locked --bin lad-hub \
 && cp target/release/lad-hub /usr/local/bin/lad-hub

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin lad

COPY --from=builder /usr/local/bin/lad-hub /usr/local/bin/lad-hub

USER lad
# A container's port is reached through its own interface, not loopback.
ENV LAD_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# GET /readyz on LAD_HTTP_ADDR (probed on loopback): no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["lad-hub", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["lad-hub"]
