#!/usr/bin/env bash
# A local PostgreSQL for the storage tests: installs Debian's package if missing, starts a cluster,
# creates the role and database strategist_test (password 'strategist') and waits until it takes
# connections on 127.0.0.1:5432. Safe to run again. Prints nothing unless something fails.
#
#   STRATEGIST_TEST_POSTGRES_URL=postgresql://strategist:strategist@127.0.0.1:5432/strategist_test
set -euo pipefail

ROLE=strategist
PASSWORD=strategist
DB=strategist_test
PORT=5432
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# Run a command quietly; on failure show what it said and stop.
quiet() {
    if ! "$@" >"$LOG" 2>&1; then
        echo "postgres.sh: failed: $*" >&2
        cat "$LOG" >&2
        exit 1
    fi
}

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update
    quiet apt-get install -y --no-install-recommends postgresql
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)

# The package creates a cluster 'main' unless told otherwise; make one if it is not there.
if [ ! -d "/etc/postgresql/$VERSION/main" ]; then
    quiet pg_createcluster --port "$PORT" "$VERSION" main
fi
CLUSTER_PORT=$(pg_conftool -s "$VERSION" main show port 2>/dev/null || echo "$PORT")
if [ "$CLUSTER_PORT" != "$PORT" ]; then
    echo "postgres.sh: cluster $VERSION/main listens on port $CLUSTER_PORT, not $PORT" >&2
    exit 1
fi
# Status 0: running; 3: stopped. Anything else is a broken cluster: let start say why.
if ! pg_ctlcluster "$VERSION" main status >/dev/null 2>&1; then
    quiet pg_ctlcluster "$VERSION" main start
fi

as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then
        break
    fi
    sleep 0.5
done
quiet pg_isready -h 127.0.0.1 -p "$PORT"

quiet as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -c "
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
        CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
    ELSE
        ALTER ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
    END IF;
END
\$\$;"
if [ -z "$(as_postgres psql -X -tA -p "$PORT" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    quiet as_postgres createdb -p "$PORT" -O "$ROLE" "$DB"
fi

# The tests connect over TCP with the password: check exactly that.
export PGPASSWORD=$PASSWORD PGCONNECT_TIMEOUT=5
for _ in $(seq 1 20); do
    if psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -c "SELECT 1" >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
quiet psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -c "SELECT 1"
