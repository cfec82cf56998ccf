#!/usr/bin/env bash
# Installs (from crates.io) and starts an S3-compatible server for the tests: s3s-fs, a
# file-backed S3 server with real SigV4 checks, multipart uploads (5 MiB minimum part
# size) and conditional puts. Prints the endpoint to export as RESUMABLE_TEST_S3. Safe to
# run again: a server already answering on the port is kept.
#
# s3s-fs 0.14.1: the newest release that builds with Rust 1.95 (0.15+ needs 1.96).
# Data under target/s3-test, in the bucket `resumable-test` (each test uses a prefix of
# its own).
set -euo pipefail
cd "$(dirname "$0")/../.."

port=${RESUMABLE_TEST_S3_PORT:-8014}
root=target/tools/s3s-fs
if [ ! -x "$root/bin/s3s-fs" ]; then
    cargo install -q -j"${JOBS:-2}" s3s-fs --version 0.14.1 --features binary --locked \
        --root "$root" >&2
fi
mkdir -p target/s3-test/resumable-test
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    setsid nohup "$root/bin/s3s-fs" --host 127.0.0.1 --port "$port" \
        --access-key resumable-test --secret-key resumable-test-secret \
        target/s3-test > target/s3-test.log 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "s3s-fs did not start on port $port:" >&2
        cat target/s3-test.log >&2
        exit 1
    fi
fi
echo "http://127.0.0.1:$port"
