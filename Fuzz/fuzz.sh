#!/usr/bin/env bash
# Builds the libFuzzer binary for Sotto's parsers and runs each target (make fuzz).
#
#   Fuzz/fuzz.sh [TARGET...]      default: every target
#   FUZZ_SECONDS=N                time per target (default 60)
#
# The parsers are compiled with plain swiftc (-sanitize=fuzzer,address, -Onone: with -O the
# coverage counters are optimised away) straight from Sources/Resolver, so the fuzz build does
# not rebuild SwiftNIO. Scratch files go to .build-fuzz/; the seed corpora in Fuzz/corpus/ are
# only read. Exits non-zero on any crash; crash inputs land in .build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
SWIFTC="${SWIFTC:-swiftc}"
OUT=.build-fuzz
BIN="$OUT/sotto-fuzz"
TARGETS=(message name presentation zone statefile control)
[ "$#" -gt 0 ] && TARGETS=("$@")

# The Resolver sources the targets need: the wire format, zone files and root hints, the
# state file and its record types, and the control request.
SOURCES=(
  Sources/Resolver/Wire/*.swift
  Sources/Resolver/Iteration/RootHints.swift
  Sources/Resolver/Iteration/Resolution.swift
  Sources/Resolver/Encryption/StateFile.swift
  Sources/Resolver/Encryption/ServerRecord.swift
  Sources/Resolver/Encryption/TransportState.swift
  Sources/Resolver/Encryption/EncryptionSettings.swift
  Sources/Resolver/Encryption/EncryptionTable.swift
  Sources/Resolver/Transport/DoT/CertificateCheck.swift
  Sources/Resolver/Server/ControlRequest.swift
  Fuzz/*.swift
)

mkdir -p "$OUT/crashes"
newest_source=$(ls -t "${SOURCES[@]}" | head -1)
if [ ! -x "$BIN" ] || [ "$newest_source" -nt "$BIN" ]; then
  echo "building $BIN"
  start=$(date +%s)
  # ld.gold warns once per ASan symbol it cannot export; those lines are noise.
  "$SWIFTC" -swift-version 6 -module-name Resolver -parse-as-library -Onone -g \
    -sanitize=fuzzer,address "${SOURCES[@]}" -o "$BIN" 2>&1 | { grep -v "Cannot export local symbol" || true; }
  echo "built $BIN in $(( $(date +%s) - start )) s"
fi

failed=()
for t in "${TARGETS[@]}"; do
  seeds="Fuzz/corpus/$t"
  work="$OUT/corpus/$t"
  [ -d "$seeds" ] || { echo "no seed corpus $seeds"; exit 1; }
  mkdir -p "$work"
  log="$OUT/$t.log"
  echo "== fuzzing $t for ${FUZZ_SECONDS}s (seeds: $(ls "$seeds" | wc -l))"
  # New inputs go to the work corpus (first directory); the committed seeds stay untouched.
  # SWIFT_BACKTRACE=enable=no: the Swift crash handler trips ASan when a target traps.
  if SWIFT_BACKTRACE=enable=no SOTTO_FUZZ_TARGET="$t" "$BIN" "$work" "$seeds" -max_total_time="$FUZZ_SECONDS" \
      -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$OUT/crashes/$t-" >"$log" 2>&1; then
    echo "$t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
  else
    echo "$t: CRASH (see $log)"
    grep -E 'fuzz invariant broken|ERROR: AddressSanitizer|Fatal error|SUMMARY|Test unit written' "$log" | head -8 || true
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets with crashes: ${failed[*]}"
  exit 1
fi
echo "fuzzing finished without crashes: ${TARGETS[*]}"
