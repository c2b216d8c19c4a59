#!/usr/bin/env bash
# Builds the libFuzzer binary for Sotto's parsers and runs each target (make fuzz).
#
#   Fuzz/fuzz.sh [TARGET...]      default: every target
#   FUZZ_SECONDS=N                time per target (default 60)
#   FUZZ_JOBS=N                   targets fuzzed at once (default 1; one core each)
#
# The parsers are compiled with plain swiftc (-sanitize=fuzzer,address, -Onone: with -O the
# coverage counters are optimised away) straight from Sources/Resolver, so the fuzz build does
# not rebuild SwiftNIO. Scratch files go to .build-fuzz/; the seed corpora in Fuzz/corpus/ are
# only read. Exits non-zero on any crash; crash inputs land in .build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
SWIFTC="${SWIFTC:-swiftc}"
OUT=.build-fuzz
BIN="$OUT/sotto-fuzz"
TARGETS=(message name presentation zone statefile control)
[ "$#" -gt 0 ] && TARGETS=("$@")

# The Resolver sources the targets need: the wire format, zone files and root hints, the
# state file and its record types (with the table's in-place helper), and the control request.
SOURCES=(
  Sources/Resolver/Wire/*.swift
  Sources/Resolver/Iteration/RootHints.swift
  Sources/Resolver/Iteration/Resolution.swift
  Sources/Resolver/Iteration/NameText.swift
  Sources/Resolver/Encryption/StateFile.swift
  Sources/Resolver/Encryption/ISOTimestamp.swift
  Sources/Resolver/Encryption/ServerRecord.swift
  Sources/Resolver/Encryption/ServerEvent.swift
  Sources/Resolver/Encryption/TransportState.swift
  Sources/Resolver/Encryption/TransportSlots.swift
  Sources/Resolver/Encryption/EncryptionSettings.swift
  Sources/Resolver/Encryption/EncryptionTable.swift
  Sources/Resolver/Encryption/TransportReason.swift
  Sources/Resolver/InPlace.swift
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

# Fuzzes one target; its log is $OUT/<target>.log, its exit status libFuzzer's.
fuzz_one() {
  local t="$1" seeds="Fuzz/corpus/$1" work="$OUT/corpus/$1"
  [ -d "$seeds" ] || { echo "no seed corpus $seeds" >"$OUT/$t.log"; return 1; }
  mkdir -p "$work"
  # New inputs go to the work corpus (first directory); the committed seeds stay untouched.
  # SWIFT_BACKTRACE=enable=no: the Swift crash handler trips ASan when a target traps.
  SWIFT_BACKTRACE=enable=no SOTTO_FUZZ_TARGET="$t" "$BIN" "$work" "$seeds" -max_total_time="$FUZZ_SECONDS" \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$OUT/crashes/$t-" >"$OUT/$t.log" 2>&1
}

report() {
  local t="$1" status="$2" log="$OUT/$1.log"
  if [ "$status" = 0 ]; then
    echo "$t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1) (corpus $(ls "$OUT/corpus/$t" | wc -l) inputs)"
  else
    echo "$t: CRASH (see $log)"
    grep -E 'fuzz invariant broken|ERROR: AddressSanitizer|Fatal error|SUMMARY|Test unit written|no seed corpus' "$log" | head -8 || true
    failed+=("$t")
  fi
}

failed=()
echo "== fuzzing ${TARGETS[*]} for ${FUZZ_SECONDS}s each, $FUZZ_JOBS at a time"
declare -A running=()  # pid -> target
reap_one() {
  local pid status=0
  wait -n -p pid || status=$?
  report "${running[$pid]}" "$status"
  unset "running[$pid]"
}
for t in "${TARGETS[@]}"; do
  while [ "${#running[@]}" -ge "$FUZZ_JOBS" ]; do reap_one; done
  fuzz_one "$t" &
  running[$!]="$t"
done
while [ "${#running[@]}" -gt 0 ]; do reap_one; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets with crashes: ${failed[*]}"
  exit 1
fi
echo "fuzzing finished without crashes: ${TARGETS[*]}"
