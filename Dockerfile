# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
# librdkafka is compiled from source by rdkafka's build script (configure + make),
# so the builder needs a C toolchain and the headers of what it links: OpenSSL,
# Cyrus SASL, zlib.
FROM rust:1.95-bookworm AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev libsasl2-dev zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
# Compile-time checked queries (if any) use the committed .sqlx data, not a live database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --bin lad-hub

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin lad

COPY --from=builder /app/target/release/lad-hub /usr/local/bin/lad-hub

USER lad
EXPOSE 8080
ENTRYPOINT ["lad-hub"]
