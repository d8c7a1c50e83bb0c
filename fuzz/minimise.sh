#!/usr/bin/env bash
# Fold what fuzz/run.sh TARGET found back into the checked-in corpus:
# afl-cmin keeps the smallest set of corpus/TARGET + out/TARGET inputs that
# covers the same edges, written back to corpus/TARGET as found-NNNN
# (the hand-made seeds keep their names; corpus/eif/basic.eif is always
# kept, the eif target diffs against it). Usage: fuzz/minimise.sh TARGET
set -euo pipefail
target=${1:?usage: $0 TARGET}
cd "$(dirname "$0")"
# cargo-afl keeps AFL++'s tools beside its runtime, per rustc version.
afl_bin=$(dirname "$(find ~/.local/share/afl.rs -path '*/afl/bin/afl-cmin.bash' | sort | tail -1)")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/in"
cp corpus/"$target"/* "$work/in/"
n=0
for f in out/"$target"/default/queue/id*; do
    [ -e "$f" ] || continue
    cp "$f" "$work/in/q$n"
    n=$((n + 1))
done
AFL_SKIP_CPUFREQ=1 AFL_PATH=$afl_bin PATH=$afl_bin:$PATH "$afl_bin/afl-cmin.bash" \
    -i "$work/in" -o "$work/min" -t 2000 -m 1024 -- "target/release/$target" >"$work/log" 2>&1 ||
    { tail -5 "$work/log" >&2; exit 2; }
rm -f corpus/"$target"/found-*
n=0
for f in "$work"/min/*; do
    name=$(basename "$f")
    if [ -e "corpus/$target/$name" ]; then continue; fi
    cp "$f" "corpus/$target/found-$(printf %04d "$n")"
    n=$((n + 1))
done
echo "corpus/$target: $(ls corpus/"$target" | wc -l) files, $(du -sh corpus/"$target" | cut -f1)"
