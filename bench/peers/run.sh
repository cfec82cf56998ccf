#!/usr/bin/env bash
# Installs the peers (django2-resumable from PyPI under gunicorn; rustus from crates.io),
# starts them on loopback, and runs the benchmark with their rows added:
#   bash bench/peers/run.sh [bench flags, e.g. --sizes 64M]
# Everything goes under target/bench/peers (venv, rustus binary, their data); nothing of
# theirs is committed. Needs python3 with venv, and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
work=$repo/target/bench/peers
mkdir -p "$work"

# django2-resumable 0.1.1 (2020, its latest) imports ugettext_lazy, gone in Django 4.0:
# Django 3.2 LTS, the newest it runs on.
requirements='django>=3.2,<4.0 django2-resumable==0.1.1 gunicorn==23.0.0'
if [ "$(cat "$work/venv/installed" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$work/venv"
  python3 -m venv "$work/venv"
  # shellcheck disable=SC2086
  "$work/venv/bin/pip" install -q $requirements
  echo "$requirements" > "$work/venv/installed"
fi
if [ ! -x "$work/rustus/bin/rustus" ]; then
  cargo install -q rustus --version 0.5.10 --root "$work/rustus"
fi
cargo build -q --release --examples

export PEER_DB=$work/django.sqlite3 PEER_MEDIA_ROOT=$work/django-media
rm -rf "$PEER_MEDIA_ROOT" "$PEER_DB" "$work/rustus-data" "$work/rustus-fsync-data"
mkdir -p "$work/rustus-data" "$work/rustus-fsync-data"
site=$repo/bench/peers/django_site
(cd "$site" && "$work/venv/bin/python" manage.py makemigrations docs -v 0 && "$work/venv/bin/python" manage.py migrate -v 0)
content_type=$(cd "$site" && "$work/venv/bin/python" manage.py shell -c \
  "from django.contrib.contenttypes.models import ContentType; from docs.models import Document; print(ContentType.objects.get_for_model(Document).id)")

# gunicorn with its recommended 2 x cores + 1 sync workers.
"$work/venv/bin/gunicorn" --chdir "$site" --workers 5 --bind 127.0.0.1:8131 \
  --log-level warning wsgi:application > "$work/gunicorn.log" 2>&1 &
django=$!
RUSTUS_LOG_LEVEL=WARN RUSTUS_MAX_BODY_SIZE=4194304 "$work/rustus/bin/rustus" \
  --host 127.0.0.1 --port 8132 --data-dir "$work/rustus-data" --info-dir "$work/rustus-data" &
rustus=$!
# The same with a flush after every PATCH, to compare with our default (a flush per chunk).
RUSTUS_LOG_LEVEL=WARN RUSTUS_MAX_BODY_SIZE=4194304 "$work/rustus/bin/rustus" \
  --host 127.0.0.1 --port 8133 --data-dir "$work/rustus-fsync-data" \
  --info-dir "$work/rustus-fsync-data" --force-fsync true &
rustus_fsync=$!
trap 'kill $django $rustus $rustus_fsync 2>/dev/null; rm -rf "$PEER_MEDIA_ROOT" "$work/rustus-data" "$work/rustus-fsync-data"' EXIT
sleep 3

target/release/examples/bench \
  --django "http://127.0.0.1:8131/resumable_upload/?content_type_id=$content_type&field_name=file" \
  --rustus "http://127.0.0.1:8132/files" \
  --rustus-fsync "http://127.0.0.1:8133/files" "$@"
