# A container image of the codectx CLI. Not exercised on the development machines (no Docker
# engine there); `scripts/demo` is the supported path.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/* \
    && git config --system safe.directory '*'
COPY --from=build /src/target/release/codectx /usr/local/bin/codectx
ENV CODECTX_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["codectx"]
