# syntax=docker/dockerfile:1
# Multi-stage build of the auditchain binary; the runtime image runs as a
# non-root user and holds nothing but the binary and CA certificates.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin auditchain

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin auditchain
COPY --from=build /src/target/release/auditchain /usr/local/bin/auditchain
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/auditchain"]
CMD ["run", "--config", "/etc/auditchain/config.toml"]
