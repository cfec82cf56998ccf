#!/usr/bin/env bash
# Installs (Debian) and starts a PostgreSQL server for the tests, creates a database
# and prints the URL to export as DATABASE_URL. Safe to run again: each step is skipped
# when already done. Needs root (apt-get, pg_ctlcluster).
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | grep "^$version main" | grep -q online; then
    pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')

psql_as_postgres() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtA $*"; }
if [ -z "$(psql_as_postgres "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'resumable'\"")" ]; then
    psql_as_postgres "-c \"CREATE ROLE resumable LOGIN PASSWORD 'resumable' CREATEDB\"" >&2
fi
if [ -z "$(psql_as_postgres "-c \"SELECT 1 FROM pg_database WHERE datname = 'resumable_test'\"")" ]; then
    psql_as_postgres "-c \"CREATE DATABASE resumable_test OWNER resumable\"" >&2
fi
echo "postgres://resumable:resumable@127.0.0.1:$port/resumable_test"
