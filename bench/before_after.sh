#!/usr/bin/env bash
# Before/after: the example server built from two commits, measured in the same run with
# the same client (examples/upload_file of the newer commit), the same file and the same
# settings, rounds alternating between the two. Prints each round and, per flush mode,
# the medians and their ratio (after ÷ before) of throughput and of server CPU seconds.
#
#   bash bench/before_after.sh BEFORE_REV [AFTER_REV] [ROUNDS] [SIZE_MIB]
#   bash bench/before_after.sh 6830044 HEAD 5 1024
#
# Each commit is built in release mode in a git worktree under target/before-after/
# (sharing target/ with the checkout, so dependencies build once). 1 MiB chunks, 3 in
# flight, multipart, on the local disk; with and without a flush per chunk.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(git rev-parse --short "${1:?usage: bench/before_after.sh BEFORE_REV [AFTER_REV] [ROUNDS] [SIZE_MIB]}")
after=$(git rev-parse --short "${2:-HEAD}")
rounds=${3:-5}
size_mib=${4:-1024}
work=$(pwd)/target/before-after
mkdir -p "$work"

build() { # rev -> copies its release binaries to $work/<rev>/
    local rev=$1 tree="$work/tree-$1"
    if [ ! -x "$work/$rev/upload_server" ]; then
        [ -d "$tree" ] || git worktree add -q --detach "$tree" "$rev"
        (cd "$tree" && CARGO_TARGET_DIR="$work/../" cargo build -q -j2 --release \
            --example upload_server --example upload_file)
        mkdir -p "$work/$rev"
        cp target/release/examples/upload_server target/release/examples/upload_file "$work/$rev/"
    fi
}
build "$before"
build "$after"

file="$work/source.bin"
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != $((size_mib << 20)) ]; then
    head -c $((size_mib << 20)) /dev/urandom > "$file"
fi
cat "$file" > /dev/null # in the page cache before measuring

port=18800
results="$work/results.txt"
: > "$results"
for mode in flush no-sync-data; do
    flag=""
    [ "$mode" = no-sync-data ] && flag="--no-sync-data"
    for round in $(seq 1 "$rounds"); do
        for rev in "$before" "$after"; do
            port=$((port + 1))
            dir="$work/run-$rev"
            rm -rf "$dir" && mkdir -p "$dir"
            "$work/$rev/upload_server" --bind "127.0.0.1:$port" --media-root "$dir/media" $flag \
                > "$dir/log" 2>&1 &
            pid=$!
            for _ in $(seq 1 100); do
                (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
                sleep 0.1
            done
            cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            line=$("$work/$after/upload_file" --url "http://127.0.0.1:$port/resumable_upload/" \
                --chunk-size 1048576 --parallel 3 "$file" | grep '^sent')
            cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            mib_s=$(echo "$line" | sed -E 's/.*: ([0-9.]+) MiB\/s.*/\1/')
            cpu_s=$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')
            echo "$mode round $round $rev: $mib_s MiB/s, server CPU $cpu_s s"
            echo "$mode $rev $mib_s $cpu_s" >> "$results"
        done
    done
done

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo
echo "medians of $rounds rounds, $size_mib MiB in 1 MiB chunks, 3 in flight, multipart:"
for mode in flush no-sync-data; do
    for column in 3 4; do
        b=$(awk -v m=$mode -v r="$before" -v c=$column '$1 == m && $2 == r {print $c}' "$results" | median)
        a=$(awk -v m=$mode -v r="$after" -v c=$column '$1 == m && $2 == r {print $c}' "$results" | median)
        what=$([ $column = 3 ] && echo "MiB/s" || echo "server CPU s")
        awk -v m=$mode -v w="$what" -v b="$b" -v a="$a" -v rb="$before" -v ra="$after" \
            'BEGIN {printf "%-13s %-13s %s %8.2f   %s %8.2f   after/before %.2f\n", m, w, rb, b, ra, a, a / b}'
    done
done
