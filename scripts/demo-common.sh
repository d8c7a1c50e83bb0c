# demo-common.sh: what demo.sh and demo-apps.sh share: the loopback
# registry they serve their fixture images from, and the comparison of
# their two builds. Sourced, not run; needs $work, $reg (127.0.0.1:PORT)
# and $bin (eifbake) set.
#
# For: the demos only (Debian's docker-registry, no TLS, loopback). Not for:
# the tests, which have their own registry in tests/common. Invariant: the
# registry's files stay under $work/registry.
#
#   start_registry
#       serves $reg from $work/registry/data; sets $registry_pid and an EXIT
#       trap that stops it (a caller with more to stop sets its own trap,
#       naming $registry_pid); returns once /v2/ answers, exits 2 after 10 s.
#   push_demo_images [--all] NAME:TAG...
#       copies oci:$work/images/NAME:TAG to $reg/eifbake-demo/REPO:TAG, REPO
#       being NAME except linux-cloud for the kernel; --all copies every
#       platform of an index.
#   compare_builds DEMO RECIPE DIR
#       prints the sha256 and PCRs of DIR/a/RECIPE.eif and DIR/b/RECIPE.eif;
#       when they differ, prints `eifbake diff` and exits 1 (DEMO names the
#       demo in the message).

start_registry() {
  mkdir -p "$work/registry"
  cat > "$work/registry/config.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry/data } }
http: { addr: $reg }
YAML
  docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
  registry_pid=$!
  trap 'kill $registry_pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -fs "http://$reg/v2/" > /dev/null && return 0
    sleep 0.1
  done
  echo "the registry on $reg did not answer within 10 s; its log is $work/registry/log" >&2
  exit 2
}

push_demo_images() {
  local all=()
  if [ "$1" = --all ]; then all=(--all); shift; fi
  local img name tag repo
  for img in "$@"; do
    name=${img%%:*} tag=${img##*:}
    repo=$name
    [ "$name" = kernel ] && repo=linux-cloud
    skopeo copy --quiet "${all[@]}" --preserve-digests --dest-tls-verify=false \
      "oci:$work/images/$name:$tag" "docker://$reg/eifbake-demo/$repo:$tag"
  done
}

compare_builds() {
  local demo=$1 recipe=$2 w=$3 a b
  a=$(sha256sum < "$w/a/$recipe.eif" | cut -d' ' -f1)
  b=$(sha256sum < "$w/b/$recipe.eif" | cut -d' ' -f1)
  echo "A  sha256:$a"
  echo "B  sha256:$b"
  sed 's/^/A  /' "$w/a/$recipe.pcrs"
  sed 's/^/B  /' "$w/b/$recipe.pcrs"
  if [ "$a" != "$b" ] || ! cmp -s "$w/a/$recipe.pcrs" "$w/b/$recipe.pcrs"; then
    echo "$demo: the two builds of $recipe differ:" >&2
    "$bin" diff "$w/a/$recipe.eif" "$w/b/$recipe.eif" >&2 || true
    exit 1
  fi
}
