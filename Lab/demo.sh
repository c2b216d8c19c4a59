#!/usr/bin/env bash
# `make demo`: start the NSD lab on loopback, resolve a few names with Sotto showing every hop,
# then serve clients and answer the same name twice (the second time from the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
SOTTO=${SOTTO_BIN:-.build/debug/sotto}
PORT=${DEMO_PORT:-5300}
python3 Lab/lab.py up
trap 'kill "${serve_pid:-}" 2>/dev/null || true; python3 Lab/lab.py down >/dev/null' EXIT
state=$(mktemp -d)/sotto-state.json
# One state file for every run below, so each lookup learns which servers speak DoT/DoQ (RFC 9539).
opts=(--root-hints Lab/root.hints --allow-loopback --tls-ca-file Lab/run/pki/ca.pem --state-file "$state")

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$SOTTO" lookup www.doq.test A --trace "${opts[@]}"
step "$SOTTO" lookup www2.doq.test A --trace "${opts[@]}"
step "$SOTTO" lookup www.example.test A --trace "${opts[@]}"
step "$SOTTO" lookup start.chain.test A --trace "${opts[@]}"
step "$SOTTO" lookup www.outside.test A --trace "${opts[@]}"
step "$SOTTO" lookup nope.example.test A "${opts[@]}"

printf '\n\033[1m$ %s serve --listen 127.0.0.1:%s ... &\033[0m\n' "$SOTTO" "$PORT"
"$SOTTO" serve --listen "127.0.0.1:$PORT" "${opts[@]}" &
serve_pid=$!
for _ in $(seq 50); do dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" localhost >/dev/null 2>&1 && break; sleep 0.1; done
step dig @127.0.0.1 -p "$PORT" example.test MX +noall +answer +stats
step dig @127.0.0.1 -p "$PORT" example.test MX +noall +answer +stats
kill -TERM "$serve_pid"; wait "$serve_pid" || true
step "$SOTTO" state show --state-file "$state"
