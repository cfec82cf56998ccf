#!/usr/bin/env bash
# Runs every test of sea-orm-resumable on a Debian machine with a Rust toolchain.
# Installs what the tests need first, so it works on a fresh machine and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# The storage-fault tests mount small tmpfs filesystems: they need root and `mount`
# (util-linux, present on Debian). Nothing else is needed yet.
if [ "$(id -u)" != 0 ]; then
    echo "note: not root, the storage-fault tests will report SKIPPED" >&2
fi

cargo test --workspace -j"${JOBS:-2}" --all-targets
cargo test --workspace -j"${JOBS:-2}" --doc
