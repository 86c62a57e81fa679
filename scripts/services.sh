#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer, then creates the application database.
#
# Uses the services when they already run; starts them when installed but stopped; installs
# them from the Debian packages (as root) when absent. Only a service on this machine
# (127.0.0.1 / localhost) is started or installed; a remote one is just checked.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

log() { printf '\033[1;34m[services]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[services]\033[0m %s\n' "$*" >&2; exit 1; }

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }

apt_install() {
    [[ $(id -u) -eq 0 ]] || die "$* is not installed and installing it needs root"
    log "installing $* from the Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() {
    local what=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not come up within 30 s"
}

pg_up() { pg_isready -q -h "$DB_HOST" -p "$DB_PORT"; }

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_up; then
        log "PostgreSQL is up at $DB_HOST:$DB_PORT"
        return
    fi
    is_local "$DB_HOST" || die "PostgreSQL at $DB_HOST:$DB_PORT does not answer"
    if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
        local conf
        conf=$(ls -d /etc/postgresql/*/main | sort -V | tail -n 1)
        # Local development and tests connect over loopback without a password, as on the
        # machines this project is developed on.
        sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/; s/^(local\s+all\s+all\s+)\S+/\1trust/' \
            "$conf/pg_hba.conf"
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for "PostgreSQL" pg_up
}

redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ${REDIS_PASSWORD:+--no-auth-warning -a "$REDIS_PASSWORD"} ping | grep -q PONG; }

ensure_redis() {
    if command -v redis-cli >/dev/null && redis_up; then
        log "Redis is up at $REDIS_HOST:$REDIS_PORT"
        return
    fi
    is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer"
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis on port $REDIS_PORT"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/erc8004.log
    wait_for "Redis" redis_up
}

ensure_database() {
    local exists
    exists=$(psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")
    if [[ "$exists" != "1" ]]; then
        log "creating database $DB_NAME"
        createdb -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME"
    fi
}

if [[ -n "${DATABASE_URL:-}" || -n "${REDIS_URL:-}" ]]; then
    log "DATABASE_URL / REDIS_URL set: the services are managed elsewhere; not checking them here"
    exit 0
fi
ensure_postgres
ensure_redis
ensure_database
