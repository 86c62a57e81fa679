#!/usr/bin/env bash
# Builds and runs every service in the foreground with prefixed logs; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
source scripts/env.sh

SERVICES=(api-gateway event-processor action-workers indexer)
PROFILE=${PROFILE:-dev}
say() { printf '\033[1;32m[run]\033[0m %s\n' "$*"; }

if [[ -z "${JWT_SECRET:-}" ]]; then
    JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export JWT_SECRET
    say "JWT_SECRET is not set: generated a random one for this local run only (tokens end with it)"
fi

say "building ${SERVICES[*]} ($PROFILE profile)"
cargo build --profile "$PROFILE" $(printf -- '-p %s ' "${SERVICES[@]}")
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin_dir="$target_dir/$([[ "$PROFILE" == dev ]] && echo debug || echo "$PROFILE")"

pids=()
stop() {
    trap - INT TERM EXIT
    say "stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

for service in "${SERVICES[@]}"; do
    # Process substitution keeps $! the service's own pid, so the signal reaches it.
    "$bin_dir/$service" > >(sed -u "s/^/[$service] /") 2>&1 &
    pids+=($!)
done

say "API: http://127.0.0.1:${SERVER_PORT:-8080}/api/v1/health   metrics: http://127.0.0.1:${SERVER_PORT:-8080}/metrics"
# Returns when any service exits; the trap then stops the others.
wait -n
