#!/usr/bin/env bash
# Runs every test of sea-orm-resumable on a Debian machine with a Rust toolchain.
# Whatever the tests need beyond Rust is installed here first, so that the same command
# works on a fresh machine and in CI: a PostgreSQL server (apt-get, started, a database
# created; DATABASE_URL exported), an S3-compatible server (cargo install s3s-fs, started;
# RESUMABLE_TEST_S3 exported), Chromium (apt-get) and the browser tests' npm packages
# (npm ci). Needs root for apt-get and the server.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL for the database tests (they also run on SQLite, which needs nothing).
# An existing DATABASE_URL is used as it is.
if [ -z "${DATABASE_URL:-}" ]; then
    DATABASE_URL=$(bash tests/setup/postgres.sh)
fi
export DATABASE_URL
echo "PostgreSQL tests use $DATABASE_URL" >&2

# An S3-compatible server (s3s-fs, built from crates.io) for the object-storage tests.
# An existing RESUMABLE_TEST_S3 is used as it is.
if [ -z "${RESUMABLE_TEST_S3:-}" ]; then
    RESUMABLE_TEST_S3=$(bash tests/setup/s3.sh)
fi
export RESUMABLE_TEST_S3
echo "S3 tests use $RESUMABLE_TEST_S3" >&2

# Browser tests: Debian's Chromium, driven by playwright-core from npm (with the genuine
# resumablejs and @flowjs/flow.js packages), on the machine's Node.js.
if [ ! -x /usr/bin/chromium ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
(cd tests/browser && npm ci --no-audit --no-fund)

# The storage-fault tests mount small tmpfs filesystems: they need root and `mount`
# (util-linux, present on Debian).
if [ "$(id -u)" != 0 ]; then
    echo "note: not root, the storage-fault tests will report SKIPPED" >&2
fi

# tests/example_server.rs runs the example app as a process: build it as a plain binary
# (`cargo test` builds examples with the test harness, under another name).
cargo build --workspace -j"${JOBS:-2}" --examples
cargo test --workspace -j"${JOBS:-2}" --all-targets
cargo test --workspace -j"${JOBS:-2}" --doc
# The browser tests drive the example server built above (target/debug/examples).
(cd tests/browser && npm test)
