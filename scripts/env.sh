# Sourced by the other scripts: reads .env (if any) without overriding the environment, and
# fills in the defaults of SPEC 5.
if [[ -f .env ]]; then
    while IFS='=' read -r key value; do
        [[ -z "$key" || "$key" == \#* ]] && continue
        key=${key#export }
        value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
        [[ -z "${!key:-}" ]] && export "$key=$value"
    done < .env
fi
export DB_HOST=${DB_HOST:-127.0.0.1}
export DB_PORT=${DB_PORT:-5432}
export DB_NAME=${DB_NAME:-erc8004}
export DB_USER=${DB_USER:-postgres}
export REDIS_HOST=${REDIS_HOST:-127.0.0.1}
export REDIS_PORT=${REDIS_PORT:-6379}
if [[ -n "${DB_PASSWORD:-}" ]]; then export PGPASSWORD=$DB_PASSWORD; fi
