.PHONY: run demo test bench migrate services fmt lint openapi

## Start PostgreSQL and Redis if needed, build, and run every service in the foreground.
run:
	@scripts/run.sh

## The same, with the local devnet's demo traffic three times as fast.
demo:
	@DEMO_INTERVAL_MS=1000 scripts/run.sh

## Formatting, lints and the whole test suite against the real PostgreSQL and Redis.
test:
	@scripts/test.sh

## Every benchmark; writes docs/benchmarks.md (about ten minutes).
bench:
	@scripts/bench.sh

## Apply the database migrations by hand (services also apply them at start).
migrate: services
	@database/run-migrations.sh

services:
	@scripts/services.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

## Write the OpenAPI document generated from the code to docs/openapi.json.
openapi:
	cargo run --quiet -p api-gateway --bin openapi > docs/openapi.json
