# Sourced by .ci/run: installs PostgreSQL from Debian when it is missing, starts a throwaway
# cluster on a free local port and exports CDP_TEST_POSTGRES_URL for the BI Connect tests.
# The cluster lives in a temporary folder and is stopped when the calling shell exits.

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_DIR=$(mktemp -d /tmp/cdp-ci-postgres.XXXXXX)
chown postgres:postgres "$PG_DIR"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
su postgres -c "$PG_BIN/initdb -D $PG_DIR/data -A trust -U postgres >/dev/null"
su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1' start >/dev/null"
su postgres -c "$PG_BIN/createdb -h 127.0.0.1 -p $PG_PORT cdp_test"
export CDP_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/cdp_test"
trap 'su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -m fast stop >/dev/null"; rm -rf "$PG_DIR"' EXIT
echo "PostgreSQL for the tests: $CDP_TEST_POSTGRES_URL"
