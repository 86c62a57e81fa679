#!/usr/bin/env bash
# Applies the migrations in database/migrations/ to the configured database by hand.
# (Every service also applies them when it starts.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo run --quiet -p shared --bin migrate
