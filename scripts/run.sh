#!/usr/bin/env bash
# Builds and runs every service in the foreground with prefixed logs; Ctrl-C stops them all.
# With no chain configured (no CHAIN_ID, INDEXER_CHAINS_FILE or config/chains.toml), a local
# devnet is started too: anvil with the project's ERC-8004 registries, indexed at once.
# The devnet carries demo traffic (a transaction every DEMO_INTERVAL_MS, 3000 by default;
# make demo: 1000), so that a trigger made on it fires; DEVNET_ARGS= turns it off.
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

# Stored secrets stay readable from one local run to the next: the key is kept in a file
# beside the checkout (git ignores it), made once.
if [[ -z "${SECRETS_KEY:-}" ]]; then
    key_file=.secrets-key
    if [[ ! -s "$key_file" ]]; then
        (umask 077 && printf 'local-%s:%s\n' "$(date +%Y%m%d)" "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" > "$key_file")
        say "SECRETS_KEY is not set: generated one for local runs in $key_file"
    fi
    SECRETS_KEY=$(cat "$key_file")
    export SECRETS_KEY
fi

if [[ -z "${CHAIN_ID:-}" && -z "${INDEXER_CHAINS_FILE:-}" && ! -f config/chains.toml ]]; then
    scripts/chain-tools.sh
    DEVNET_PORT=${DEVNET_PORT:-8545}
    # anvil's first account deploys the registries with nonces 0, 1 and 2: these addresses.
    export DEVNET_PORT CHAIN_ID=31337 CHAIN_NAME="Local devnet" CHAIN_RPC_URLS="http://127.0.0.1:$DEVNET_PORT" \
        CHAIN_IDENTITY_ADDRESS=0x5FbDB2315678afecb367f032d93F642f64180aa3 \
        CHAIN_REPUTATION_ADDRESS=0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512 \
        CHAIN_VALIDATION_ADDRESS=0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0 \
        CHAIN_CONFIRMATIONS=0 CHAIN_POLL_INTERVAL_MS=500
    # Webhook receivers on this machine are allowed on the devnet only.
    export WEBHOOK_ALLOWED_CIDRS=${WEBHOOK_ALLOWED_CIDRS:-127.0.0.0/8}
    export DEMO_INTERVAL_MS=${DEMO_INTERVAL_MS:-3000}
    SERVICES=(devnet "${SERVICES[@]}")
    say "no chain configured: starting a local devnet (anvil on port $DEVNET_PORT, chain 31337)"
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
    args=()
    [[ "$service" == devnet ]] && read -ra args <<< "${DEVNET_ARGS---demo}"
    # Process substitution keeps $! the service's own pid, so the signal reaches it.
    "$bin_dir/$service" "${args[@]}" > >(sed -u "s/^/[$service] /") 2>&1 &
    pids+=($!)
done

API="http://127.0.0.1:${SERVER_PORT:-8080}/api/v1"
say "API: $API/health   Swagger UI: http://127.0.0.1:${SERVER_PORT:-8080}/api-docs/   metrics: http://127.0.0.1:${SERVER_PORT:-8080}/metrics"
cat <<NEXT
[run] next, in another terminal (a webhook receiver of yours on port 9000, say):
  curl -s -XPOST $API/auth/register -H 'content-type: application/json' -d '{"email":"me@example.com","password":"a long password"}'
  TOKEN=\$(curl -s -XPOST $API/auth/login -H 'content-type: application/json' -d '{"email":"me@example.com","password":"a long password"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
  curl -s -XPOST $API/triggers -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"name":"Poor feedback","scope":{"event_types":["NewFeedback"]},"condition":{"field":"value","op":"lt","value":"50"},"actions":[{"type":"webhook","url":"http://127.0.0.1:9000/hook"}]}'
NEXT
# Returns when any service exits; the trap then stops the others.
wait -n
