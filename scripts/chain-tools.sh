#!/usr/bin/env bash
# Installs the pinned anvil and solc from npm (tools/chain) and compiles the project's
# ERC-8004 test contracts into contracts/out. Does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[chain-tools] $*"; }

if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: installing Node.js from the system packages"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

if [ ! -x tools/chain/node_modules/.bin/anvil ] || [ ! -x tools/chain/node_modules/.bin/solcjs ] \
    || [ tools/chain/package-lock.json -nt tools/chain/node_modules/.package-lock.json ]; then
    log "installing anvil and solc (tools/chain)"
    npm ci --prefix tools/chain --no-audit --no-fund --loglevel=error
fi
tools/chain/node_modules/.bin/anvil --version | head -1 | sed 's/^/[chain-tools] /'

stale=0
for source in contracts/*.sol; do
    if [ ! -d contracts/out ] || [ "$source" -nt contracts/out ] || [ tools/chain/compile.mjs -nt contracts/out ]; then
        stale=1
    fi
done
if [ "$stale" = 1 ]; then
    node tools/chain/compile.mjs | sed 's/^/[chain-tools] /'
    touch contracts/out
fi
