#!/usr/bin/env bash
# Runs every benchmark (processor, workers, indexer, API, end-to-end latency) and writes
# docs/benchmarks.md: a table of every figure with its limit and ratio, the machine, and
# each benchmark's full output.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/chain-tools.sh
source scripts/env.sh
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://$DB_USER@$DB_HOST:$DB_PORT/postgres}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT/}

BENCHES=("event-processor processor" "action-workers webhook" "indexer backfill" "api-gateway api" "api-gateway backtest" "e2e latency")
out=$(mktemp -d)
for bench in "${BENCHES[@]}"; do
    read -r package name <<< "$bench"
    echo "[bench] $package/$name"
    cargo bench --locked -p "$package" --bench "$name" 2>/dev/null | grep -v '^\s*$' | tee "$out/$name.txt"
done

report=docs/benchmarks.md
{
    echo "# Benchmarks"
    echo
    echo "Written by \`make bench\` on $(date -u +%Y-%m-%d): $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)),"
    echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) of memory, PostgreSQL $(psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc 'SHOW server_version' | cut -d' ' -f1),"
    echo "Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'); every service, the load and the limit share the machine."
    echo
    echo "| what | ours | limit | ratio |"
    echo "|---|---|---|---|"
    for bench in "${BENCHES[@]}"; do
        read -r _ name <<< "$bench"
        grep '^| ' "$out/$name.txt" || true
    done
    for bench in "${BENCHES[@]}"; do
        read -r package name <<< "$bench"
        echo
        echo "## $package: \`cargo bench -p $package --bench $name\`"
        echo
        echo '```'
        grep -v '^| ' "$out/$name.txt" | grep -v '^\s*Running\|Finished\|Compiling' || true
        echo '```'
    done
} > "$report"
echo "[bench] wrote $report"
