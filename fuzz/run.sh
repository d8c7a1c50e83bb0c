#!/usr/bin/env bash
# Fuzz one target with AFL++ for a while: fuzz/run.sh TARGET SECONDS
#
# TARGET is one of: eif cpio layers recipe lock attestation containerfile signature (src/bin/TARGET.rs).
# Starts from corpus/TARGET (resuming out/TARGET when it exists), stops
# after SECONDS, then prints one line to parse:
#   FUZZ-RESULT target=T seconds=S execs=N crashes=C hangs=H corpus=Q
# and exits 1 if AFL saved any crash or hang (listed above that line,
# under out/TARGET/default/{crashes,hangs}), else 0.
# Environment: FUZZ_TMPDIR (default /dev/shm, a tmpfs) holds the scratch
# files harnesses hand to path-taking readers; AFL_MEM_MB (default 1024) bounds the target's memory, so an
# allocation blow-up is a crash; AFL_TIMEOUT_MS (default 2000) makes a slow
# input a hang.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 TARGET SECONDS (TARGET: eif cpio layers recipe lock attestation containerfile signature)" >&2
    exit 2
fi
target=$1
seconds=$2
cd "$(dirname "$0")"
if [ ! -f "src/bin/$target.rs" ]; then
    echo "$0: no fuzz target $target (expected src/bin/$target.rs)" >&2
    exit 2
fi
if ! cargo afl --version >/dev/null 2>&1; then
    echo "$0: cargo-afl is missing: cargo install cargo-afl && cargo afl config --build" >&2
    exit 2
fi
cargo afl build --release --quiet --bin "$target"
mkdir -p out
export TMPDIR=${FUZZ_TMPDIR:-/dev/shm}
export AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SUPPRESS_ERROR_CODE=1
cargo afl fuzz -i "corpus/$target" -o "out/$target" -V "$seconds" \
    -m "${AFL_MEM_MB:-1024}" -t "${AFL_TIMEOUT_MS:-2000}" \
    "target/release/$target" >"out/$target.log" 2>&1 || {
    tail -30 "out/$target.log" >&2
    echo "$0: afl-fuzz failed; its log is out/$target.log" >&2
    exit 2
}
stats=out/$target/default/fuzzer_stats
stat() { awk -F: -v k="$1" '{gsub(/ /, "", $1); gsub(/ /, "", $2)} $1 == k {print $2}' "$stats"; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
for f in out/"$target"/default/crashes/id* out/"$target"/default/hangs/id*; do
    [ -e "$f" ] && echo "finding: $f"
done
echo "FUZZ-RESULT target=$target seconds=$seconds execs=$(stat execs_done) crashes=$crashes hangs=$hangs corpus=$(stat corpus_count)"
[ "$crashes" = 0 ] && [ "$hangs" = 0 ]
