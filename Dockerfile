# One build for every service; pick one with --target (api-gateway, event-processor,
# action-workers, indexer). Migrations are compiled into the binaries.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api-gateway -p event-processor -p action-workers -p indexer

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 app
USER app
WORKDIR /app

FROM runtime AS api-gateway
COPY --from=build /src/target/release/api-gateway /src/target/release/reseal-secrets /usr/local/bin/
EXPOSE 8080
CMD ["api-gateway"]

FROM runtime AS event-processor
COPY --from=build /src/target/release/event-processor /usr/local/bin/
EXPOSE 9101
CMD ["event-processor"]

FROM runtime AS action-workers
COPY --from=build /src/target/release/action-workers /usr/local/bin/
EXPOSE 9102
CMD ["action-workers"]

FROM runtime AS indexer
COPY --from=build /src/target/release/indexer /usr/local/bin/
EXPOSE 9103
CMD ["indexer"]
