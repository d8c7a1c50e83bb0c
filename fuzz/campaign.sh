#!/usr/bin/env bash
# Fuzz targets until each has GOAL executions in total: fuzz/campaign.sh GOAL
# [TARGET...] (default: every target, fastest first). Runs fuzz/run.sh in
# 10-minute slices, each resuming out/TARGET, so it can be stopped (Ctrl-C)
# and started again without losing executions; prints each slice's
# FUZZ-RESULT line and stops at the first crash or hang.
set -euo pipefail
goal=${1:?usage: $0 GOAL [TARGET...]}
shift
targets=("${@:-cpio lock recipe containerfile signature eif layers attestation}")
read -r -a targets <<<"${targets[*]}"
cd "$(dirname "$0")"
execs() {
    local stats=out/$1/default/fuzzer_stats
    [ -f "$stats" ] || { echo 0; return; }
    awk -F: '{gsub(/ /, "", $1); gsub(/ /, "", $2)} $1 == "execs_done" {print $2}' "$stats"
}
for t in "${targets[@]}"; do
    while [ "$(execs "$t")" -lt "$goal" ]; do
        ./run.sh "$t" "${SLICE_SECONDS:-600}" | grep FUZZ-RESULT
    done
    echo "CAMPAIGN-DONE target=$t execs=$(execs "$t") goal=$goal"
done
