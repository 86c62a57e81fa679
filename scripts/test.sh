#!/usr/bin/env bash
# The whole check: formatting, lints, and every test against the real PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/chain-tools.sh
source scripts/env.sh

step() { printf '\033[1;34m[test]\033[0m %s\n' "$*"; }

# Databases left behind by a test run that was killed.
leftovers=$(psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'erc8004\_test\_%'")
for db in $leftovers; do
    psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
done

export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://$DB_USER@$DB_HOST:$DB_PORT/postgres}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT/}

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo build --bins (the fault test runs the services as processes)"
cargo build --workspace --bins --locked
step "cargo test"
cargo test --workspace --locked
