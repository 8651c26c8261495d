# Builds the `floe` binary; used by minio-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin floe

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/floe /usr/local/bin/floe
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/floe"]
