#!/usr/bin/env bash
# Cost of `eifbake check` relative to plain builds (the target: N runs cost
# no more than N builds plus 10%).
#
# One busybox fixture recipe (a path source, one step, the busybox image as
# rootfs and as a stand-in kernel), served from a loopback docker-registry and
# fetched into a store first. Then, same machine, one after the other:
#   - N single `eifbake build --no-cache` runs (fresh output directory each);
#   - `eifbake check --runs N` with every variation on (its N builds, its
#     per-run project and store copies, its comparison);
# and prints both wall times and the ratio check / N builds. Run by hand
# (the benchmark harness, `make bench`, does not run it):
#
#   cargo build --release && bash bench/check.sh          # N=2
#   N=4 bash bench/check.sh
#   STEP_MIB=2000 bash bench/check.sh   # a step that hashes 2000 MiB: a slower build
#
# On a tiny build check's fixed costs (copies, a tmpfs, the `time` variation
# waiting for the next wall-clock second when the control took under one)
# dominate; STEP_MIB shows how the ratio approaches 1 as builds get longer.
set -euo pipefail

N=${N:-2}
STEP_MIB=${STEP_MIB:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EIFBAKE=${EIFBAKE:-$ROOT/target/release/eifbake}
[ -x "$EIFBAKE" ] || { echo "bench/check.sh: $EIFBAKE not built (cargo build --release)" >&2; exit 2; }
for t in docker-registry skopeo crun; do
  command -v "$t" >/dev/null || { echo "bench/check.sh: $t missing (scripts/deps.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$ROOT/scripts/make-busybox-image.sh" "$WORK/busybox" 1 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/registry } }
http: { addr: 127.0.0.1:$PORT }
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/busybox:1" "docker://127.0.0.1:$PORT/bench/busybox:1"

P=$WORK/project
mkdir -p "$P/recipes/bench/app"
for i in $(seq 1 50); do echo "file $i" >"$P/recipes/bench/app/f$i"; done
cat >"$P/recipes/bench/recipe.toml" <<TOML
name = "bench"
version = "0.1.0"
source_date_epoch = 1700000000

[images]
bb = "127.0.0.1:$PORT/bench/busybox:1"

[sources.app]
path = "app"

[[steps]]
name = "make"
image = "bb"
mounts = { "/src/app" = "app" }
workdir = "/src/app"
run = "mkdir -p /out/r && cat f* > /out/r/all && ls > /out/r/list && dd if=/dev/zero bs=1M count=$STEP_MIB 2>/dev/null | sha256sum > /out/r/sum"
outputs = { "/out/r" = "/r" }

[enclave]
rootfs = "bb"
kernel = { image = "bb", path = "/bin/busybox" }
init = { image = "bb", path = "/bin/busybox" }
cmdline = "console=ttyS0"
command = ["/bin/sh"]
TOML
export EIFBAKE_STORE=$WORK/store EIFBAKE_NO_PROGRESS=1
cd "$P"
"$EIFBAKE" lock recipes/bench >/dev/null
"$EIFBAKE" fetch recipes/bench >/dev/null

now() { date +%s.%N; }
t0=$(now)
for i in $(seq 1 "$N"); do
  "$EIFBAKE" --offline build recipes/bench --no-cache --out "$WORK/out$i" >/dev/null
done
t1=$(now)
"$EIFBAKE" --offline check recipes/bench --runs "$N" >"$WORK/check.log"
t2=$(now)
python3 - "$N" "$t0" "$t1" "$t2" <<'PY'
import sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:])
builds, check = t1 - t0, t2 - t1
print(f"| what | wall s |\n|---|---|\n| {n} x build --no-cache | {builds:.2f} |\n| check --runs {n} (all variations) | {check:.2f} |")
print(f"check / {n} builds = {check / builds:.2f} (target <= 1.10)")
PY
