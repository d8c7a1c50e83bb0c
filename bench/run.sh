#!/usr/bin/env bash
# eifbake benchmarks: pack, measure, unpack and pull, each side by side with
# the tools people use today, on one deterministic synthetic root filesystem.
# Writes bench/RESULTS.md. Run with `make bench` (which builds first) or
# directly:
#
#   bash bench/run.sh
#   BENCH_SIZE_MIB=1024 BENCH_RUNS=3 bash bench/run.sh
#
# Settings (environment):
#   BENCH_SIZE_MIB   size of the synthetic tree, MiB (default 512)
#   BENCH_RUNS       runs per timed command; the best wall time counts (default 3)
#   BENCH_SCALE_MIB  extra tree sizes for the memory-scaling section,
#                    space separated (default "128 1024"; "" skips them)
#   BENCH_RESULTS    where to write the report (default bench/RESULTS.md)
#   EIF_BUILD        AWS eif_build binary (default: PATH, target/tools/bin
#                    (where scripts/deps.sh --with-eif-build puts it), else
#                    `cargo install --locked eif_build --root target/tools`)
#
# Everything it writes lives in bench/work/ (gitignored): trees and layers are
# kept between runs and regenerated only when the generator changes.
#
# Each section checks first that the eifbake command it needs works on a tiny
# input; when it does not (not merged yet, broken), the section is reported as
# skipped with the reason and the others still run. Numbers are never made up:
# every figure in RESULTS.md comes from a command this script ran.
#
# Method: wall time is the best of BENCH_RUNS runs, page cache warm (inputs
# were just written or read), outputs not fsynced; `sync` runs before each
# timed run so earlier writeback does not land in it. Peak RSS is GNU time's
# %M for the command, i.e. the largest resident set of any single process in
# it (for a shell pipeline: its hungriest stage), the maximum over the runs.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

SIZE=${BENCH_SIZE_MIB:-512}
RUNS=${BENCH_RUNS:-3}
SCALE_SIZES=${BENCH_SCALE_MIB-128 1024}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
WORK=$ROOT/bench/work
RES=$WORK/results
GNU_TIME=/usr/bin/time
CMDLINE="console=ttyS0 reboot=k panic=30 pci=off nomodules random.trust_cpu=on"

case "$SIZE" in '' | *[!0-9]*) echo "bench: BENCH_SIZE_MIB must be an integer (MiB), got '$SIZE'" >&2; exit 2 ;; esac
case "$RUNS" in '' | *[!0-9]* | 0) echo "bench: BENCH_RUNS must be a positive integer, got '$RUNS'" >&2; exit 2 ;; esac
for s in $SCALE_SIZES; do
  case "$s" in *[!0-9]*) echo "bench: BENCH_SCALE_MIB must list integers (MiB), got '$s'" >&2; exit 2 ;; esac
done

mkdir -p "$WORK"
rm -rf "$RES"
mkdir -p "$RES"

# Progress bars off even if someone runs this on a terminal: they would only
# cost time and clutter the logs.
export EIFBAKE_NO_PROGRESS=1
export CMDLINE

START_EPOCH=$(date -u +%s)
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- results

declare -A WALL RSSK CPU
# Section fragments, in order, and the targets table.
SECTIONS=()
TARGETS=$RES/targets.md
: >"$TARGETS"

section_file() { echo "$RES/section-$1.md"; }
start_section() {
  SECTIONS+=("$1")
  : >"$(section_file "$1")"
}
out() { printf '%s\n' "$*" >>"$(section_file "${SECTIONS[-1]}")"; }
skip_section() {
  out ""
  out "**Skipped:** $1"
  log "${SECTIONS[-1]}: skipped: $1"
}
# target DESCRIPTION MEASURED MET(yes|no|n/a)
target() {
  local mark
  case "$3" in yes) mark="met" ;; no) mark="**missed**" ;; *) mark="$3" ;; esac
  printf '| %s | %s | %s |\n' "$1" "$2" "$mark" >>"$TARGETS"
}

# Formatting with awk (bash has no floating point).
fmt_s() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
fmt_cs() { awk -v c="$1" 'BEGIN { printf "%.2f", c / 100 }'; }
fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# le A B: is A <= B (floats)?
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
mib_of_bytes() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
size_of() { stat -c %s "$1"; }

LAST_ERR=""
# timed NAME RUNS CMD [PREP]: run CMD (a bash -c string; exported variables
# are visible to it) RUNS times, PREP before each run untimed. Records the
# best wall time (ns) in WALL[NAME], the peak RSS (KiB) in RSSK[NAME] and the
# least CPU time (user + system, of the command and all its children, in
# centiseconds) in CPU[NAME].
# On failure returns 1 with the end of stderr in LAST_ERR.
timed() {
  local name=$1 runs=$2 cmd=$3 prep=${4:-}
  local i t0 t1 ns rss cpu best=0 maxrss=0 mincpu=-1
  for ((i = 1; i <= runs; i++)); do
    if [ -n "$prep" ] && ! bash -c "$prep" >"$RES/$name.prep.log" 2>&1; then
      LAST_ERR="preparation failed: $(tail -n 3 "$RES/$name.prep.log" | tr '\n' ' ')"
      return 1
    fi
    sync
    t0=$(date +%s%N)
    if ! "$GNU_TIME" -f '%M %U %S' -o "$RES/$name.rss" bash -c "$cmd" >"$RES/$name.stdout" 2>"$RES/$name.stderr"; then
      LAST_ERR="$(tail -n 3 "$RES/$name.stderr" | tr '\n' ' ')"
      log "$name: failed: $LAST_ERR"
      return 1
    fi
    t1=$(date +%s%N)
    ns=$((t1 - t0))
    read -r rss cpu < <(tail -n 1 "$RES/$name.rss" | awk '{ printf "%d %d\n", $1, ($2 + $3) * 100 + 0.5 }')
    if ((best == 0 || ns < best)); then best=$ns; fi
    if ((rss > maxrss)); then maxrss=$rss; fi
    if ((mincpu < 0 || cpu < mincpu)); then mincpu=$cpu; fi
  done
  WALL[$name]=$best
  RSSK[$name]=$maxrss
  CPU[$name]=$mincpu
  log "$name: best of $runs $(fmt_s "$best") s, CPU $(fmt_cs "$mincpu") s, peak RSS $(fmt_mib "$maxrss") MiB"
}

# smoke CMD: does CMD work on a tiny input? On failure LAST_ERR says why.
smoke() {
  if ! bash -c "$1" >"$RES/smoke.log" 2>&1; then
    LAST_ERR="$(grep -v '^\s*$' "$RES/smoke.log" | tail -n 2 | tr '\n' ' ')"
    return 1
  fi
}

# A table row: | label | wall s | CPU s | cores (CPU ÷ wall) | RSS MiB | extra... |
row() {
  local label=$1 name=$2
  shift 2
  local cores
  cores=$(awk -v c="${CPU[$name]}" -v ns="${WALL[$name]}" 'BEGIN { printf "%.2f", (c / 100) / (ns / 1e9) }')
  local cols="| $label | $(fmt_s "${WALL[$name]}") | $(fmt_cs "${CPU[$name]}") | $cores | $(fmt_mib "${RSSK[$name]}")"
  for c in "$@"; do cols+=" | $c"; done
  out "$cols |"
}

# ---------------------------------------------------------------- machine

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
git_rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
git_branch=$(git -C "$ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)

# ---------------------------------------------------------------- build

log "building eifbake and the bench helpers (release)"
CARGO=${CARGO:-cargo}
if ! $CARGO build --release --locked --bin eifbake >"$RES/build.log" 2>&1; then
  tail -n 20 "$RES/build.log" >&2
  echo "bench: cargo build --release failed (see above)" >&2
  exit 2
fi
EB=$ROOT/target/release/eifbake
export EB
declare -A EXAMPLE
for ex in bench_gentree sha384_pass aws_measure apply_layers; do
  if [ ! -f "examples/$ex.rs" ]; then
    EXAMPLE[$ex]=""
    continue
  fi
  if $CARGO build --release --locked --example "$ex" >"$RES/build-$ex.log" 2>&1; then
    EXAMPLE[$ex]=$ROOT/target/release/examples/$ex
  else
    log "example $ex does not build; sections using it are skipped (see $RES/build-$ex.log)"
    EXAMPLE[$ex]=""
  fi
done
if [ -z "${EXAMPLE[bench_gentree]}" ]; then
  echo "bench: examples/bench_gentree.rs does not build; cannot make the synthetic tree" >&2
  exit 2
fi
export SHA384_PASS=${EXAMPLE[sha384_pass]} AWS_MEASURE=${EXAMPLE[aws_measure]} APPLY_LAYERS=${EXAMPLE[apply_layers]}

find_eif_build() {
  local c
  for c in "${EIF_BUILD:-}" "$(command -v eif_build 2>/dev/null)" "$ROOT/target/tools/bin/eif_build"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}
if ! EIF_BUILD=$(find_eif_build); then
  log "installing AWS eif_build into target/tools (cargo install --locked, a few minutes)"
  if $CARGO install --locked eif_build --version 0.2.1 --root "$ROOT/target/tools" >"$RES/eif_build-install.log" 2>&1; then
    EIF_BUILD=$ROOT/target/tools/bin/eif_build
  else
    log "eif_build install failed; see $RES/eif_build-install.log"
    EIF_BUILD=""
  fi
fi
export EIF_BUILD

# ---------------------------------------------------------------- trees

# The generator's source is the tree's version: a changed generator means a
# new tree (and new layers).
GEN_HASH=$(sha256sum examples/bench_gentree.rs | cut -c1-16)
KERNEL=$WORK/kernel-$GEN_HASH.bin
export KERNEL

# make_tree SIZE: bench/work/tree-SIZE, written under a temporary name and
# renamed when complete; sets TREE_DIR and TREE_STATS[SIZE] (the generator's
# JSON summary). Not for use in $(...): it sets globals.
declare -A TREE_STATS
TREE_DIR=""
make_tree() {
  local size=$1 dir=$WORK/tree-$1 stamp=$WORK/tree-$1.stamp stats
  TREE_DIR=$dir
  if [ -d "$dir" ] && [ -f "$KERNEL" ] && [ "$(head -n1 "$stamp" 2>/dev/null)" = "$GEN_HASH" ]; then
    TREE_STATS[$size]=$(tail -n1 "$stamp")
    return 0
  fi
  rm -rf "$dir" "$dir.tmp" "$stamp"
  log "generating the ${size} MiB synthetic tree in $dir"
  if ! stats=$("${EXAMPLE[bench_gentree]}" "$dir.tmp" "$size" "$KERNEL.tmp"); then
    rm -rf "$dir.tmp" "$KERNEL.tmp"
    return 1
  fi
  mv "$KERNEL.tmp" "$KERNEL"
  mv "$dir.tmp" "$dir"
  printf '%s\n%s\n' "$GEN_HASH" "$stats" >"$stamp"
  TREE_STATS[$size]=$stats
}

if ! make_tree "$SIZE"; then
  echo "bench: generating the synthetic tree failed" >&2
  exit 2
fi
TREE=$TREE_DIR
export TREE
tree_json=${TREE_STATS[$SIZE]}
tree_files=$(jq -r .files <<<"$tree_json")
tree_dirs=$(jq -r .dirs <<<"$tree_json")
tree_links=$(jq -r .symlinks <<<"$tree_json")
tree_bytes=$(jq -r .bytes <<<"$tree_json")

# A tiny tree for smoke checks.
SMOKE=$RES/smoke
mkdir -p "$SMOKE/tree/sub"
echo hello >"$SMOKE/tree/sub/file"
export SMOKE

P=$WORK/pack
rm -rf "$P"
mkdir -p "$P"
export P

# ================================================================ pack

start_section pack
out "## pack: directory → ramdisk → EIF"
out ""
out "eifbake: \`eifbake ramdisk TREE -o R [--gzip]\` then \`eifbake eif --kernel K --cmdline S --ramdisk R -o E\`."
out "Shell + AWS: \`find . | LC_ALL=C sort | cpio -o -H newc --reproducible [| gzip -n]\` then AWS \`eif_build\` 0.2.1 with the same kernel and cmdline."
out "pigz row (for context, not a target): the same pipeline with \`pigz -n\` (2 threads) instead of \`gzip -n\`."

pack_ok=0
EB_PACK_PLAIN='"$EB" ramdisk "$TREE" -o "$P/eb.cpio" && "$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb.eif"'
EB_PACK_GZ='"$EB" ramdisk --gzip "$TREE" -o "$P/eb.cpio.gz" && "$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio.gz" -o "$P/eb-gz.eif"'
SH_PACK_PLAIN='cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet >"$P/sh.cpio" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/sh.cpio" --output "$P/sh.eif" >/dev/null'
SH_PACK_GZ='cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -n >"$P/sh.cpio.gz" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/sh.cpio.gz" --output "$P/sh-gz.eif" >/dev/null'
SH_PACK_PIGZ='cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | pigz -n >"$P/pigz.cpio.gz" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/pigz.cpio.gz" --output "$P/pigz.eif" >/dev/null'

out ""
out "Tree: $tree_files files, $tree_dirs directories, $tree_links symlinks, $(mib_of_bytes "$tree_bytes") MiB of file data."
if [ -z "$EIF_BUILD" ]; then
  skip_section "AWS eif_build is not available and could not be installed (see bench/work/results/eif_build-install.log)."
elif ! smoke '"$EB" ramdisk "$SMOKE/tree" -o "$SMOKE/r.cpio" && "$EB" eif --kernel "$KERNEL" --cmdline x --ramdisk "$SMOKE/r.cpio" -o "$SMOKE/e.eif"'; then
  skip_section "\`eifbake ramdisk\`/\`eifbake eif\` do not work in this build ($git_branch $git_rev): $LAST_ERR"
else
  log "pack: $RUNS runs each"
  if timed pack_eb_plain "$RUNS" "$EB_PACK_PLAIN" &&
    timed pack_sh_plain "$RUNS" "$SH_PACK_PLAIN" &&
    timed pack_eb_gz "$RUNS" "$EB_PACK_GZ" &&
    timed pack_sh_gz "$RUNS" "$SH_PACK_GZ" &&
    timed pack_sh_pigz "$RUNS" "$SH_PACK_PIGZ"; then
    pack_ok=1
  else
    skip_section "a pack command failed: $LAST_ERR"
  fi
fi
if ((pack_ok)); then
  out ""
  out "| command | wall s (best of $RUNS) | CPU s | cores | peak RSS MiB | ramdisk MiB | EIF MiB | shell time ÷ eifbake time |"
  out "|---|---:|---:|---:|---:|---:|---:|---:|"
  row "eifbake, plain" pack_eb_plain "$(mib_of_bytes "$(size_of "$P/eb.cpio")")" "$(mib_of_bytes "$(size_of "$P/eb.eif")")" "1.00"
  row "cpio + eif_build, plain" pack_sh_plain "$(mib_of_bytes "$(size_of "$P/sh.cpio")")" "$(mib_of_bytes "$(size_of "$P/sh.eif")")" "$(ratio "${WALL[pack_sh_plain]}" "${WALL[pack_eb_plain]}")"
  row "eifbake, \`--gzip\`" pack_eb_gz "$(mib_of_bytes "$(size_of "$P/eb.cpio.gz")")" "$(mib_of_bytes "$(size_of "$P/eb-gz.eif")")" "1.00"
  row "cpio \| gzip -n + eif_build" pack_sh_gz "$(mib_of_bytes "$(size_of "$P/sh.cpio.gz")")" "$(mib_of_bytes "$(size_of "$P/sh-gz.eif")")" "$(ratio "${WALL[pack_sh_gz]}" "${WALL[pack_eb_gz]}")"
  row "cpio \| pigz -n + eif_build (context)" pack_sh_pigz "$(mib_of_bytes "$(size_of "$P/pigz.cpio.gz")")" "$(mib_of_bytes "$(size_of "$P/pigz.eif")")" "$(ratio "${WALL[pack_sh_pigz]}" "${WALL[pack_eb_gz]}")"
  gz_ratio_eb=$(ratio "$(size_of "$P/eb.cpio.gz")" "$(size_of "$P/eb.cpio")")
  gz_ratio_sh=$(ratio "$(size_of "$P/sh.cpio.gz")" "$(size_of "$P/sh.cpio")")
  out ""
  out "Compressed ÷ plain ramdisk size: eifbake $gz_ratio_eb, gzip -n $gz_ratio_sh."
  sp=$(ratio "${WALL[pack_sh_gz]}" "${WALL[pack_eb_gz]}")
  met=no
  le 3 "$sp" && met=yes
  target "pack with gzip ≥ 3x faster than cpio \| gzip -n + eif_build" "${sp}x (CPU time: $(ratio "${CPU[pack_sh_gz]}" "${CPU[pack_eb_gz]}")x less)" "$met"
  for n in pack_eb_plain pack_eb_gz; do
    m=$(fmt_mib "${RSSK[$n]}")
    met=no
    le "$m" 64 && met=yes
    target "peak RSS of eifbake ${n#pack_eb_} pack < 64 MiB ($SIZE MiB tree)" "$m MiB" "$met"
  done
fi

# ================================================================ sign

start_section sign
out "## sign: the same plain ramdisk packed into a signed EIF"
out ""
out "eifbake: \`eifbake eif … --signing-certificate C --private-key K\` (ECDSA P-384, RFC 6979 nonces)."
out "AWS: \`eif_build … --signing-certificate C --private-key K\` (OpenSSL, random nonce). Key and certificate:"
out "the test-only pair in \`tests/data/signing/signer1.{pem,key}\`. Each tool runs twice; the last column says"
out "whether its two outputs are the same bytes."
SIGN_CERT=$ROOT/tests/data/signing/signer1.pem
SIGN_KEY=$ROOT/tests/data/signing/signer1.key
export SIGN_CERT SIGN_KEY
if ((pack_ok == 0)); then
  skip_section "the pack section did not run, so there is no ramdisk to sign."
elif ! smoke '"$EB" eif --kernel "$KERNEL" --cmdline x --ramdisk "$SMOKE/r.cpio" -o "$SMOKE/s.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY"'; then
  skip_section "\`eifbake eif\` cannot sign in this build ($git_branch $git_rev): $LAST_ERR"
elif timed sign_eb "$RUNS" '"$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null' &&
  cp "$P/eb-signed.eif" "$P/eb-signed-1.eif" &&
  timed sign_eb_unsigned "$RUNS" '"$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb-unsigned.eif" >/dev/null' &&
  timed sign_aws "$RUNS" '"$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" --output "$P/aws-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null' &&
  cp "$P/aws-signed.eif" "$P/aws-signed-1.eif" &&
  timed sign_eb_again 1 '"$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null' &&
  timed sign_aws_again 1 '"$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" --output "$P/aws-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null'; then
  same() { if cmp -s "$1" "$2"; then echo yes; else echo no; fi; }
  out ""
  out "| command | wall s (best of $RUNS) | CPU s | cores | peak RSS MiB | EIF MiB | AWS time ÷ eifbake time | two runs identical |"
  out "|---|---:|---:|---:|---:|---:|---:|---:|"
  row "eifbake eif, signed" sign_eb "$(mib_of_bytes "$(size_of "$P/eb-signed.eif")")" "1.00" "$(same "$P/eb-signed.eif" "$P/eb-signed-1.eif")"
  row "eifbake eif, unsigned (context)" sign_eb_unsigned "$(mib_of_bytes "$(size_of "$P/eb-unsigned.eif")")" "" ""
  row "eif_build, signed" sign_aws "$(mib_of_bytes "$(size_of "$P/aws-signed.eif")")" "$(ratio "${WALL[sign_aws]}" "${WALL[sign_eb]}")" "$(same "$P/aws-signed.eif" "$P/aws-signed-1.eif")"
  eb_pcrs=$("$EB" describe --json "$P/eb-signed.eif" | jq -c '.Measurements | {PCR0, PCR8}')
  aws_pcrs=$("$EB" describe --json "$P/aws-signed.eif" | jq -c '.Measurements | {PCR0, PCR8}')
  out ""
  out "PCR0 and PCR8 of the two tools' signed EIFs agree: $([ "$eb_pcrs" = "$aws_pcrs" ] && echo yes || echo no) ($eb_pcrs)."
  same_eb=$(same "$P/eb-signed.eif" "$P/eb-signed-1.eif")
  target "a signed EIF is the same bytes when made twice" "eifbake: $same_eb, eif_build: $(same "$P/aws-signed.eif" "$P/aws-signed-1.eif")" "$same_eb"
else
  skip_section "a sign command failed: $LAST_ERR"
fi

# ================================================================ measure

start_section measure
out "## measure: PCRs of an EIF"
out ""
out "All four read the same file: the plain EIF that AWS \`eif_build\` wrote in the pack section (so eifbake also reads a foreign EIF)."
out "\`sha384_pass\` (examples/sha384_pass.rs) is one SHA-384 over every byte of the file on one core with 4 MiB reads, using the same \`sha2\` crate as eifbake; it and coreutils \`sha384sum\` give the floor for any reader."
out "\`aws_measure\` (examples/aws_measure.rs) is AWS's \`EifReader::from_eif\` + \`check_crc\` + \`get_measurements\` from aws-nitro-enclaves-image-format 0.8."

MEASURE_RUNS=$((RUNS < 5 ? 5 : RUNS))
export MEIF=$P/sh.eif
if [ ! -f "$MEIF" ] && [ -n "$EIF_BUILD" ]; then
  # The pack section was skipped: make the EIF here from a plain cpio.
  log "measure: making an EIF with cpio + eif_build"
  bash -c "$SH_PACK_PLAIN" >"$RES/measure-eif.log" 2>&1 || true
fi
if [ ! -f "$MEIF" ]; then
  skip_section "no EIF to measure (AWS eif_build unavailable: see the pack section)."
elif [ -z "$SHA384_PASS" ] || [ -z "$AWS_MEASURE" ]; then
  skip_section "examples/sha384_pass.rs or examples/aws_measure.rs did not build (see bench/work/results/build-*.log)."
elif ! smoke '"$EB" describe "$MEIF" >/dev/null'; then
  skip_section "\`eifbake describe\` does not work in this build ($git_branch $git_rev): $LAST_ERR"
else
  cat "$MEIF" >/dev/null
  log "measure: $MEASURE_RUNS runs each on $(mib_of_bytes "$(size_of "$MEIF")") MiB"
  if timed m_sha "$MEASURE_RUNS" '"$SHA384_PASS" "$MEIF"' &&
    timed m_sha384sum "$MEASURE_RUNS" 'sha384sum "$MEIF"' &&
    timed m_describe "$MEASURE_RUNS" '"$EB" describe "$MEIF"' &&
    timed m_describe_json "$MEASURE_RUNS" '"$EB" describe --json "$MEIF"' &&
    timed m_aws "$MEASURE_RUNS" '"$AWS_MEASURE" "$MEIF"'; then
    # The readers must agree before their speed means anything.
    agree=yes
    for n in 0 1 2; do
      a=$(awk -v r="PCR$n" '$2 == r { print $1 }' "$RES/m_aws.stdout")
      b=$(jq -r ".Measurements.PCR$n // empty" "$RES/m_describe_json.stdout")
      if [ -z "$a" ] || [ "$a" != "$b" ]; then agree="no (PCR$n: AWS '$a', eifbake '$b')"; fi
    done
    out ""
    out "File: $(mib_of_bytes "$(size_of "$MEIF")") MiB. PCR0/1/2 from eifbake and from AWS's reader agree: $agree."
    out ""
    # The floor is the faster of the two single-core passes.
    floor=m_sha
    ((WALL[m_sha384sum] < WALL[m_sha])) && floor=m_sha384sum
    out "| command | wall s (best of $MEASURE_RUNS) | CPU s | cores | peak RSS MiB | MiB/s | ÷ floor time |"
    out "|---|---:|---:|---:|---:|---:|---:|"
    mib=$(mib_of_bytes "$(size_of "$MEIF")")
    for pair in "sha384_pass (one core, the floor):m_sha" "sha384sum (coreutils):m_sha384sum" "eifbake describe:m_describe" "eifbake describe --json:m_describe_json" "AWS EifReader (aws_measure):m_aws"; do
      label=${pair%%:*} n=${pair##*:}
      row "$label" "$n" "$(awk -v m="$mib" -v ns="${WALL[$n]}" 'BEGIN { printf "%.0f", m / (ns / 1e9) }')" "$(ratio "${WALL[$n]}" "${WALL[$floor]}")"
    done
    sp=$(ratio "${WALL[m_aws]}" "${WALL[m_describe]}")
    met=no
    le 2 "$sp" && met=yes
    target "describe ≥ 2x faster than AWS EifReader" "${sp}x" "$met"
    vs=$(ratio "${WALL[m_describe]}" "${WALL[$floor]}")
    met=no
    le "$vs" 1.25 && met=yes
    target "describe within 1.25x of one SHA-384 pass (the faster of sha384_pass and sha384sum)" "${vs}x the pass (CPU: $(ratio "${CPU[m_describe]}" "${CPU[$floor]}")x)" "$met"
    out ""
    out "The floor is the faster of the two single-core passes in wall time. On a busy machine a process also waits for a core, so wall times of sequential runs can differ more than their work does: the CPU column (user + system, least over the runs) shows the work itself."
    m=$(fmt_mib "${RSSK[m_describe]}")
    met=no
    le "$m" 64 && met=yes
    target "peak RSS of eifbake describe < 64 MiB" "$m MiB" "$met"
    [ "$agree" = yes ] && met=yes || met=no
    target "eifbake describe and AWS EifReader agree on PCR0/1/2" "$agree" "$met"
  else
    skip_section "a measure command failed: $LAST_ERR"
  fi
fi

# ================================================================ memory scaling

start_section memory
out "## memory as the tree grows"
out ""
out "One run of each step per tree size (peak RSS of the process; wall time for context)."
out "eifbake's steps should stay flat; AWS \`eif_build\` and \`EifReader\` hold whole sections in memory."
out "Flat means: the peak at the largest size is within 1.25x of the peak at the smallest size. Trees: $(for s in $SCALE_SIZES; do printf '%s MiB ' "$s"; done)besides the main one, same generator (file count grows with the size)."
sizes=$( (for s in $SCALE_SIZES "$SIZE"; do echo "$s"; done) | sort -n | uniq | tr '\n' ' ')
if [ "$(wc -w <<<"$sizes")" -lt 2 ]; then
  skip_section "only one tree size (set BENCH_SCALE_MIB to add sizes)."
elif ! smoke '"$EB" ramdisk --gzip "$SMOKE/tree" -o "$SMOKE/r.cpio.gz" && "$EB" eif --kernel "$KERNEL" --cmdline x --ramdisk "$SMOKE/r.cpio.gz" -o "$SMOKE/e2.eif" && "$EB" describe "$SMOKE/e2.eif"'; then
  skip_section "\`eifbake ramdisk --gzip\`/\`eif\`/\`describe\` do not work in this build ($git_branch $git_rev): $LAST_ERR"
else
  mem_ok=1
  header="| step |"
  sep="|---|"
  for s in $sizes; do
    header+=" $s MiB tree: RSS MiB (s) |"
    sep+="---:|"
  done
  for s in $sizes; do
    if ! make_tree "$s"; then
      mem_ok=0
      LAST_ERR="generating the $s MiB tree failed"
      break
    fi
    export MT=$TREE_DIR MP=$WORK/mem-$s
    rm -rf "$MP"
    mkdir -p "$MP"
    log "memory: $s MiB tree"
    timed "mem_ramdisk_$s" 1 '"$EB" ramdisk --gzip "$MT" -o "$MP/r.cpio.gz"' &&
      timed "mem_eif_$s" 1 '"$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$MP/r.cpio.gz" -o "$MP/e.eif"' &&
      timed "mem_describe_$s" 1 '"$EB" describe "$MP/e.eif"' || {
      mem_ok=0
      break
    }
    if [ -n "$EIF_BUILD" ]; then
      timed "mem_eifbuild_$s" 1 '"$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$MP/r.cpio.gz" --output "$MP/aws.eif" >/dev/null' || true
    fi
    if [ -n "$AWS_MEASURE" ]; then
      timed "mem_aws_$s" 1 '"$AWS_MEASURE" "$MP/e.eif"' || true
    fi
    rm -rf "$MP"
  done
  if ((mem_ok)); then
    out ""
    out "$header"
    out "$sep"
    for step in "eifbake ramdisk --gzip:mem_ramdisk" "eifbake eif:mem_eif" "eifbake describe:mem_describe" "AWS eif_build:mem_eifbuild" "AWS EifReader:mem_aws"; do
      label=${step%%:*} key=${step##*:}
      line="| $label |"
      for s in $sizes; do
        n=${key}_$s
        if [ -n "${RSSK[$n]:-}" ]; then
          line+=" $(fmt_mib "${RSSK[$n]}") ($(fmt_s "${WALL[$n]}")) |"
        else
          line+=" n/a |"
        fi
      done
      out "$line"
    done
    small=${sizes%% *}
    large=$(awk '{ print $NF }' <<<"$sizes")
    for step in "ramdisk --gzip:mem_ramdisk" "eif:mem_eif" "describe:mem_describe"; do
      label=${step%%:*} key=${step##*:}
      a=${RSSK[${key}_$small]} b=${RSSK[${key}_$large]}
      g=$(ratio "$b" "$a")
      # Growth per tree entry: what eifbake keeps per file (to sort paths).
      ea=$(jq -r '.files + .dirs + .symlinks' <<<"${TREE_STATS[$small]}")
      eb=$(jq -r '.files + .dirs + .symlinks' <<<"${TREE_STATS[$large]}")
      per=$(awk -v a="$a" -v b="$b" -v ea="$ea" -v eb="$eb" 'BEGIN { if (eb == ea) print "n/a"; else printf "%.0f", (b - a) * 1024 / (eb - ea) }')
      met=no
      le "$g" 1.25 && le "$(fmt_mib "$b")" 64 && met=yes
      target "eifbake $label memory flat and < 64 MiB (${small} → ${large} MiB tree)" "$(fmt_mib "$a") → $(fmt_mib "$b") MiB (${g}x; $per bytes more per extra tree entry)" "$met"
    done
  else
    skip_section "a step failed: $LAST_ERR"
  fi
fi

# ================================================================ layers (shared by unpack and pull)

# Three gzip layers from the tree, each a share of the top directories and
# one or two of the large files, made with GNU tar (sorted, owners 0, fixed
# mtimes) and `gzip -n`; kept with the tree's stamp.
L=$WORK/layers-$SIZE
make_layers() {
  if [ -f "$L/stamp" ] && [ "$(cat "$L/stamp")" = "$GEN_HASH" ]; then return 0; fi
  rm -rf "$L"
  mkdir -p "$L.tmp"
  log "making 3 gzip layers of the tree (tar + gzip -n)"
  local tarflags=(--sort=name --format=gnu --mtime=@1 --owner=0 --group=0 --numeric-owner)
  (cd "$TREE" && tar "${tarflags[@]}" -cf - --no-recursion data --recursion data/assets.pak bin etc lib | gzip -n >"$L.tmp/layer1.tar.gz") &&
    (cd "$TREE" && tar "${tarflags[@]}" -cf - data/journal.log data/libbig.so opt share | gzip -n >"$L.tmp/layer2.tar.gz") &&
    (cd "$TREE" && tar "${tarflags[@]}" -cf - data/model.bin srv usr var | gzip -n >"$L.tmp/layer3.tar.gz") || return 1
  local i
  for i in 1 2 3; do
    gzip -dc "$L.tmp/layer$i.tar.gz" | sha256sum | cut -d' ' -f1 >"$L.tmp/layer$i.diffid" || return 1
  done
  echo "$GEN_HASH" >"$L.tmp/stamp"
  mv "$L.tmp" "$L"
}
layers_ok=0
if make_layers; then
  layers_ok=1
else
  LAYERS_ERR="making the layers with tar + gzip -n failed"
  rm -rf "$L.tmp"
fi
export L

# ================================================================ unpack

start_section unpack
out "## unpack: applying image layers"
out ""
out "Three gzip layers made from the tree with GNU tar (\`--sort=name --owner=0 --group=0 --mtime=@1\`) and \`gzip -n\`, applied in order into an empty directory."
out "eifbake: \`eifbake::oci::layer::apply_layers\` through examples/apply_layers.rs (no CLI command exposes it alone). GNU tar: \`tar -xzf LAYER -C DIR\` for each layer (its gzip runs as a separate process). Both run as $(id -un), outputs not fsynced."
U=$WORK/unpack
export U
if ((!layers_ok)); then
  skip_section "$LAYERS_ERR"
elif [ -z "$APPLY_LAYERS" ]; then
  skip_section "examples/apply_layers.rs is not in this build: the layer application code (branch layers, \`eifbake::oci::layer\`) is not merged yet."
elif ! smoke 'mkdir -p "$SMOKE/l" && tar -C "$SMOKE/tree" -czf "$SMOKE/l/1.tar.gz" sub && rm -rf "$SMOKE/lt" && "$APPLY_LAYERS" "$SMOKE/lt" "$SMOKE/l/1.tar.gz" && test -f "$SMOKE/lt/sub/file"'; then
  skip_section "eifbake's layer application does not work in this build ($git_branch $git_rev): $LAST_ERR"
else
  out ""
  out "Layers: $(for i in 1 2 3; do printf '%s MiB ' "$(mib_of_bytes "$(size_of "$L/layer$i.tar.gz")")"; done)compressed, $(mib_of_bytes "$(($(gzip -l "$L/layer1.tar.gz" | awk 'NR==2{print $2}') + $(gzip -l "$L/layer2.tar.gz" | awk 'NR==2{print $2}') + $(gzip -l "$L/layer3.tar.gz" | awk 'NR==2{print $2}')))") MiB of tar."
  cat "$L"/layer*.tar.gz >/dev/null
  mkdir -p "$U"
  log "unpack: $RUNS runs each"
  if timed unpack_tar "$RUNS" 'mkdir "$U/tar" && for i in 1 2 3; do tar -xzf "$L/layer$i.tar.gz" -C "$U/tar" || exit 1; done' 'rm -rf "$U/tar"' &&
    timed unpack_eb "$RUNS" '"$APPLY_LAYERS" "$U/eb" "$L/layer1.tar.gz" "$L/layer2.tar.gz" "$L/layer3.tar.gz"' 'rm -rf "$U/eb"'; then
    # Same tree? Compare type, mode, owner, size, link target and path of
    # every entry (contents are compared by the layer tests, not here).
    listing() { (cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %s %l %p\n' | LC_ALL=C sort | sha256sum | cut -c1-16); }
    lt=$(listing "$U/tar")
    le_=$(listing "$U/eb")
    same=no
    [ "$lt" = "$le_" ] && same=yes
    out ""
    out "Same entries (type, mode, owner, size, link target, path) in both trees: $same (listing hashes: tar $lt, eifbake $le_)."
    out ""
    out "| command | wall s (best of $RUNS) | CPU s | cores | peak RSS MiB | ÷ tar time |"
    out "|---|---:|---:|---:|---:|---:|"
    row "GNU tar -xzf, 3 layers" unpack_tar "1.00"
    row "eifbake apply_layers, 3 layers" unpack_eb "$(ratio "${WALL[unpack_eb]}" "${WALL[unpack_tar]}")"
    r=$(ratio "${WALL[unpack_eb]}" "${WALL[unpack_tar]}")
    met=no
    le "$r" 1.2 && met=yes
    target "layer application within 1.2x of GNU tar -xzf" "${r}x tar's time" "$met"
    [ "$same" = yes ] && met=yes || met=no
    target "layer application gives the same entries as GNU tar" "$same" "$met"
  else
    skip_section "an unpack command failed: $LAST_ERR"
  fi
  rm -rf "$U"
fi

# ================================================================ pull

start_section pull
out "## pull: registry → local OCI layout"
out ""
out "A loopback \`docker-registry serve\` (CNCF distribution, filesystem storage in a temporary directory) holds the three-layer image (pushed with \`skopeo copy\` from an OCI layout)."
out "eifbake: \`eifbake lock\` once, then \`eifbake --store S fetch RECIPE\` into an empty store each run. skopeo: \`skopeo copy --src-tls-verify=false docker://ADDR/bench/synthetic:1 oci:DIR:bench\` into an empty directory each run."

REG_PID=""
REG_DIR=""
cleanup() {
  if [ -n "$REG_PID" ]; then
    kill "$REG_PID" 2>/dev/null
    wait "$REG_PID" 2>/dev/null
  fi
  [ -n "$REG_DIR" ] && rm -rf "$REG_DIR"
}
trap cleanup EXIT

# start_registry: a docker-registry on a free loopback port; sets REG_ADDR.
start_registry() {
  REG_DIR=$(mktemp -d "$WORK/registry.XXXXXX")
  local attempt port code
  for attempt in 1 2 3 4 5; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    # Taken if something answers there.
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    REG_ADDR=127.0.0.1:$port
    cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
http:
  addr: $REG_ADDR
EOF
    docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/registry.log" 2>&1 &
    REG_PID=$!
    local i
    for i in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/" 2>/dev/null)
      if [ "$code" = 200 ]; then return 0; fi
      kill -0 "$REG_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$REG_PID" 2>/dev/null
    wait "$REG_PID" 2>/dev/null
    REG_PID=""
  done
  LAST_ERR="docker-registry did not answer on a loopback port after 5 attempts: $(tail -n 2 "$REG_DIR/registry.log" 2>/dev/null | tr '\n' ' ')"
  return 1
}

# make_layout DIR: an OCI image layout of the three layers, tagged "bench".
make_layout() {
  local d=$1 i hex size blobs=$1/blobs/sha256 layers="" diffids="" cfg man
  rm -rf "$d"
  mkdir -p "$blobs"
  for i in 1 2 3; do
    hex=$(sha256sum "$L/layer$i.tar.gz" | cut -d' ' -f1)
    size=$(size_of "$L/layer$i.tar.gz")
    ln "$L/layer$i.tar.gz" "$blobs/$hex" 2>/dev/null || cp "$L/layer$i.tar.gz" "$blobs/$hex" || return 1
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}"
    diffids+="${diffids:+,}\"sha256:$(cat "$L/layer$i.diffid")\""
  done
  cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffids]}}"
  printf '%s' "$cfg" >"$d/config.json"
  hex=$(sha256sum "$d/config.json" | cut -d' ' -f1)
  size=$(size_of "$d/config.json")
  mv "$d/config.json" "$blobs/$hex"
  man="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$hex\",\"size\":$size},\"layers\":[$layers]}"
  printf '%s' "$man" >"$d/manifest.json"
  hex=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
  size=$(size_of "$d/manifest.json")
  mv "$d/manifest.json" "$blobs/$hex"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' "$hex" "$size" >"$d/index.json"
}

PL=$WORK/pull
export PL
if ((!layers_ok)); then
  skip_section "$LAYERS_ERR"
elif ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
  skip_section "docker-registry or skopeo is not installed (scripts/deps.sh installs them)."
elif ! start_registry; then
  skip_section "$LAST_ERR"
else
  rm -rf "$PL"
  mkdir -p "$PL/recipes"
  export IMAGE=$REG_ADDR/bench/synthetic:1
  pull_ok=0
  if ! make_layout "$PL/layout" >"$RES/layout.log" 2>&1; then
    skip_section "could not write the OCI layout of the layers: $(tail -n 2 "$RES/layout.log" | tr '\n' ' ')"
  elif ! skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$PL/layout:bench" "docker://$IMAGE" >"$RES/push.log" 2>&1; then
    skip_section "skopeo could not push the image to the loopback registry: $(tail -n 2 "$RES/push.log" | tr '\n' ' ')"
  else
    # The smallest recipe lock accepts: one image, used for rootfs, kernel and init.
    cat >"$PL/recipes/bench.toml" <<EOF
name = "bench"
arch = "x86_64"

[images]
synthetic = "$IMAGE"

[enclave]
rootfs = "synthetic"
kernel = { image = "synthetic", path = "/data/libbig.so" }
init = { image = "synthetic", path = "/bin/pkg-0000/sub-00/f000000.o" }
cmdline = "console=ttyS0"
command = ["/bin/sh"]
EOF
    export RECIPE=$PL/recipes/bench.toml
    if ! smoke '"$EB" lock "$RECIPE"'; then
      skip_section "\`eifbake lock\` does not work in this build ($git_branch $git_rev): $LAST_ERR"
    elif ! smoke 'rm -rf "$PL/smoke-store" && "$EB" --store "$PL/smoke-store" fetch "$RECIPE" && rm -rf "$PL/smoke-store"'; then
      skip_section "\`eifbake fetch\` does not work in this build ($git_branch $git_rev): $LAST_ERR"
    else
      log "pull: $RUNS runs each"
      if timed pull_skopeo "$RUNS" 'skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE" "oci:$PL/skopeo:bench"' 'rm -rf "$PL/skopeo"' &&
        timed pull_eb "$RUNS" '"$EB" --store "$PL/store" fetch "$RECIPE"' 'rm -rf "$PL/store"'; then
        pull_ok=1
      else
        skip_section "a pull command failed: $LAST_ERR"
      fi
    fi
  fi
  if ((pull_ok)); then
    # Both must hold every layer the image has.
    have_all=yes
    for i in 1 2 3; do
      hex=$(sha256sum "$L/layer$i.tar.gz" | cut -d' ' -f1)
      [ -f "$PL/store/blobs/sha256/$hex" ] || have_all="no (eifbake store lacks layer $i)"
      [ -f "$PL/skopeo/blobs/sha256/$hex" ] || have_all="no (skopeo layout lacks layer $i)"
    done
    total=0
    for i in 1 2 3; do total=$((total + $(size_of "$L/layer$i.tar.gz"))); done
    out ""
    out "Image: 3 layers, $(mib_of_bytes "$total") MiB compressed. Both copies hold every layer blob: $have_all."
    out ""
    out "| command | wall s (best of $RUNS) | CPU s | cores | peak RSS MiB | MiB/s | ÷ skopeo time |"
    out "|---|---:|---:|---:|---:|---:|---:|"
    mbs() { awk -v b="$total" -v ns="${WALL[$1]}" 'BEGIN { printf "%.0f", b / 1048576 / (ns / 1e9) }'; }
    row "skopeo copy" pull_skopeo "$(mbs pull_skopeo)" "1.00"
    row "eifbake fetch" pull_eb "$(mbs pull_eb)" "$(ratio "${WALL[pull_eb]}" "${WALL[pull_skopeo]}")"
    r=$(ratio "${WALL[pull_eb]}" "${WALL[pull_skopeo]}")
    met=no
    le "$r" 1.0 && met=yes
    target "eifbake fetch no slower than skopeo copy" "${r}x skopeo's time" "$met"
  fi
  rm -rf "$PL/store" "$PL/skopeo"
fi
cleanup
REG_PID=""
REG_DIR=""

# ================================================================ report

end_epoch=$(date -u +%s)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# eifbake benchmarks"
  echo ""
  echo "Written by \`bench/run.sh\`; do not edit by hand. Recompute with:"
  echo ""
  echo '```'
  echo "BENCH_SIZE_MIB=$SIZE BENCH_RUNS=$RUNS BENCH_SCALE_MIB=\"$SCALE_SIZES\" bash bench/run.sh    # or: make bench"
  echo '```'
  echo ""
  echo "- date: $(date -u -d "@$START_EPOCH" '+%Y-%m-%d %H:%M UTC'), run took $(((end_epoch - START_EPOCH) / 60)) min $(((end_epoch - START_EPOCH) % 60)) s"
  echo "- eifbake: $git_branch $git_rev ($("$EB" --version 2>/dev/null || echo '?')), built with $(rustc --version 2>/dev/null)"
  echo "- machine: $(nproc) CPUs ($cpu_model), $mem_total RAM, Linux $(uname -r); load average $load_start at start, $load_end at the end"
  echo "  (the machine is shared with other builds: wall times are best of $RUNS, and the rest still carries some noise)"
  echo "- peers: $(cpio --version | head -n1), $(gzip --version | head -n1), $(pigz --version 2>&1 | head -n1), $(tar --version | head -n1), AWS eif_build ${EIF_BUILD:+$("$EIF_BUILD" --help 2>/dev/null | awk '/--build-tool-version/ { f = 1 } f && /default:/ { gsub(/.*default: |\].*/, ""); print; exit }')}, aws-nitro-enclaves-image-format 0.8, $(skopeo --version), docker-registry $(docker-registry --version 2>/dev/null | awk '{ print $NF }')"
  echo "- synthetic tree ($SIZE MiB, examples/bench_gentree.rs, fixed seed): $tree_files files, $tree_dirs directories, $tree_links symlinks, $(mib_of_bytes "$tree_bytes") MiB of file data; small files (64 B–64 KiB) of text, object-code-like and random data, plus four large files; kernel stand-in: 8 MiB"
  echo "- method: wall time = best of the runs, page cache warm, outputs not fsynced (\`sync\` before each run); CPU = user + system time of the command and its children (least over the runs); cores = CPU ÷ wall, the parallelism it actually got (at most 2 here, less while other jobs hold a core); peak RSS = GNU time %M, the largest single process of the command, max over the runs"
  echo ""
  echo "## Targets"
  echo ""
  if [ -s "$TARGETS" ]; then
    echo "| target | measured | result |"
    echo "|---|---|---|"
    cat "$TARGETS"
  else
    echo "No target could be measured in this run (see the sections below)."
  fi
  for s in "${SECTIONS[@]}"; do
    echo ""
    cat "$(section_file "$s")"
  done
  if [ -f "$ROOT/fuzz/RESULTS.md" ]; then
    echo ""
    cat "$ROOT/fuzz/RESULTS.md"
  fi
  echo ""
  echo "## Exact commands"
  echo ""
  echo "Variables: \`EB\` = target/release/eifbake, \`TREE\` = bench/work/tree-$SIZE, \`KERNEL\` = the 8 MiB stand-in, \`CMDLINE\` = \`$CMDLINE\`, \`P\`/\`U\`/\`PL\` = work directories, \`L\` = the layer directory."
  echo ""
  echo '```sh'
  echo "# pack"
  echo "$EB_PACK_PLAIN"
  echo "$SH_PACK_PLAIN"
  echo "$EB_PACK_GZ"
  echo "$SH_PACK_GZ"
  echo "$SH_PACK_PIGZ"
  echo "# measure (MEIF = \$P/sh.eif)"
  echo '"$SHA384_PASS" "$MEIF"; sha384sum "$MEIF"; "$EB" describe "$MEIF"; "$EB" describe --json "$MEIF"; "$AWS_MEASURE" "$MEIF"'
  echo "# unpack"
  echo 'mkdir "$U/tar" && for i in 1 2 3; do tar -xzf "$L/layer$i.tar.gz" -C "$U/tar"; done'
  echo '"$APPLY_LAYERS" "$U/eb" "$L/layer1.tar.gz" "$L/layer2.tar.gz" "$L/layer3.tar.gz"'
  echo "# pull"
  echo 'skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE" "oci:$PL/skopeo:bench"'
  echo '"$EB" --store "$PL/store" fetch "$RECIPE"'
  echo '```'
} >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
log "wrote $RESULTS in $(((end_epoch - START_EPOCH) / 60)) min $(((end_epoch - START_EPOCH) % 60)) s"
