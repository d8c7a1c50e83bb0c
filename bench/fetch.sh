#!/usr/bin/env bash
# Pull benchmark: `eifbake fetch` versus `skopeo copy` of the same image from a
# loopback docker-registry, both into empty destinations, same machine, one run.
#
# The image is synthetic and deterministic: LAYERS layers of LAYER_MIB MiB of
# AES-CTR keystream (incompressible, fixed keys), packed by umoci (gzip).
# Prints a markdown table (median wall time and peak RSS of RUNS runs) and the
# ratio eifbake/skopeo; meant to be called from bench/run.sh or by hand:
#
#   cargo build --release && bash bench/fetch.sh            # 8 x 64 MiB, 3 runs
#   LAYERS=4 LAYER_MIB=32 RUNS=1 bash bench/fetch.sh        # quick
set -euo pipefail

LAYERS=${LAYERS:-8}
LAYER_MIB=${LAYER_MIB:-64}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EIFBAKE=${EIFBAKE:-$ROOT/target/release/eifbake}
[ -x "$EIFBAKE" ] || { echo "bench/fetch.sh: $EIFBAKE not built (cargo build --release)" >&2; exit 2; }
for t in docker-registry skopeo umoci openssl /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench/fetch.sh: $t missing (scripts/deps.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The image.
umoci init --layout "$WORK/layout" >/dev/null
umoci new --image "$WORK/layout:bench" >/dev/null
for i in $(seq 1 "$LAYERS"); do
  key=$(printf '%032x' "$i")
  # openssl dies of SIGPIPE when head has enough: expected, hence `|| true`.
  { openssl enc -aes-128-ctr -K "$key" -iv 0 -nosalt </dev/zero 2>/dev/null || true; } | head -c $((LAYER_MIB << 20)) >"$WORK/data$i"
  umoci insert --image "$WORK/layout:bench" "$WORK/data$i" "/data$i" >/dev/null
  rm -f "$WORK/data$i"
done

# The registry, on a free loopback port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-60000 -n 1)
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
IMAGE=127.0.0.1:$PORT/bench/synthetic:1
skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$WORK/layout:bench" "docker://$IMAGE"

mkdir -p "$WORK/proj/recipes"
cat >"$WORK/proj/recipes/bench.toml" <<TOML
name = "bench"
[images]
img = "$IMAGE"
[enclave]
kernel = { image = "img", path = "/data1" }
init = { image = "img", path = "/data1" }
cmdline = "console=ttyS0"
command = ["/data1"]
TOML
"$EIFBAKE" lock "$WORK/proj/recipes/bench.toml" >/dev/null

# measure NAME CMD...: one run, appends "seconds kib" to $WORK/NAME.times
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/t" "$@" >/dev/null
  cat "$WORK/t" >>"$WORK/$name.times"
}
for _ in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/store" "$WORK/sk"
  measure eifbake env EIFBAKE_NO_PROGRESS=1 "$EIFBAKE" --store "$WORK/store" fetch "$WORK/proj/recipes/bench.toml"
  measure skopeo skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE" "oci:$WORK/sk:bench"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
e_s=$(cut -d' ' -f1 "$WORK/eifbake.times" | median); e_m=$(cut -d' ' -f2 "$WORK/eifbake.times" | median)
s_s=$(cut -d' ' -f1 "$WORK/skopeo.times" | median); s_m=$(cut -d' ' -f2 "$WORK/skopeo.times" | median)

echo "### pull: eifbake fetch vs skopeo copy ($LAYERS x $LAYER_MIB MiB gzip layers, loopback docker-registry, median of $RUNS)"
echo
echo "| tool | wall s | peak RSS MiB |"
echo "|---|---|---|"
echo "| eifbake fetch | $e_s | $((e_m / 1024)) |"
echo "| skopeo copy | $s_s | $((s_m / 1024)) |"
echo
awk -v e="$e_s" -v s="$s_s" 'BEGIN { printf "ratio eifbake/skopeo: %.2f (below 1 = eifbake faster)\n", e / s }'
