#!/usr/bin/env bash
# make-test-attestation-keys.sh [OUTDIR]
#
# TEST-ONLY certificate chains for eifbake's attestation-document tests,
# written into OUTDIR (default tests/data/attestation/chain). They are shaped
# like AWS's Nitro chain (a self-signed root, intermediates with
# basicConstraints CA:true, a leaf with CA:false and keyUsage
# digitalSignature; ECDSA P-384 with SHA-384 throughout) but issued by a
# made-up root, so a document they sign must never pass as AWS's. They are
# generated once and checked in. Never use these keys for anything but tests:
# the private keys are public.
#
# Needs the openssl CLI (3.0 or later). Files:
#
#   root.pem root.key                 self-signed test root, 2020-01-01..2099-12-31
#   inter.pem inter.key               intermediate CA (pathlen 1), issued by root
#   leaf.pem leaf.key                 the document signer (CA:false, digitalSignature), issued by inter
#   inter-not-ca.pem inter-not-ca.key an "intermediate" with CA:false, issued by root
#   leaf-under-not-ca.pem             a leaf (leaf.key) issued by inter-not-ca
#   inter-sha256.pem                  the intermediate's key and name, signed by root with ecdsa-with-SHA256
#   leaf-expired.pem                  leaf.key, valid 2000-01-01..2001-01-01 only, issued by inter
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../tests/data/attestation/chain}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v openssl >/dev/null || { echo "make-test-attestation-keys: the openssl CLI is needed" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/certs"
: > "$work/index.txt"
echo 2000 > "$work/serial"
cat > "$work/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $work
database = \$dir/index.txt
new_certs_dir = \$dir/certs
serial = \$dir/serial
default_md = sha384
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[ policy_any ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_root ]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_inter ]
basicConstraints = critical, CA:true, pathlen:1
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_leaf ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
[ v3_not_ca ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
EOF

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$out/$1.key"; }

# sign NAME KEY SUBJECT ISSUER START END EXTENSIONS [MD]
sign() {
  openssl req -new -key "$out/$2.key" -subj "$3" -out "$work/$1.csr" -config "$work/ca.cnf"
  openssl ca -batch -config "$work/ca.cnf" -notext -md "${8:-sha384}" -cert "$out/$4.pem" -keyfile "$out/$4.key" \
    -startdate "$5" -enddate "$6" -extensions "$7" -in "$work/$1.csr" -out "$out/$1.pem" 2>/dev/null
}

ec_key root
openssl req -new -key "$out/root.key" -subj "/O=eifbake tests/CN=eifbake fake nitro root (test only)" \
  -out "$work/root.csr" -config "$work/ca.cnf"
openssl ca -batch -selfsign -config "$work/ca.cnf" -notext -md sha384 -keyfile "$out/root.key" \
  -startdate 20200101000000Z -enddate 20991231235959Z -extensions v3_root -in "$work/root.csr" \
  -out "$out/root.pem" 2>/dev/null

for n in inter leaf inter-not-ca; do ec_key "$n"; done
long="20200101000000Z 20991231235959Z"
# shellcheck disable=SC2086 # $long is two arguments
sign inter inter "/O=eifbake tests/CN=eifbake fake nitro intermediate (test only)" root $long v3_inter
# shellcheck disable=SC2086
sign leaf leaf "/O=eifbake tests/CN=eifbake fake enclave (test only)" inter $long v3_leaf
# shellcheck disable=SC2086
sign inter-not-ca inter-not-ca "/O=eifbake tests/CN=eifbake not a CA (test only)" root $long v3_not_ca
# shellcheck disable=SC2086
sign leaf-under-not-ca leaf "/O=eifbake tests/CN=eifbake fake enclave under a non-CA (test only)" \
  inter-not-ca $long v3_leaf
# shellcheck disable=SC2086
sign inter-sha256 inter "/O=eifbake tests/CN=eifbake fake nitro intermediate (test only)" root $long v3_inter sha256
sign leaf-expired leaf "/O=eifbake tests/CN=eifbake fake enclave (test only)" inter \
  20000101000000Z 20010101000000Z v3_leaf

cat > "$out/README.md" <<'EOF'
# Test-only attestation chains

TEST ONLY: these private keys are public. They exist for eifbake's
attestation-document tests (`src/attestation.rs`, `tests/attestation.rs`):
a made-up root, intermediates and an enclave leaf shaped like AWS's Nitro
chain, used to sign documents the tests build. Regenerate them with
`bash scripts/make-test-attestation-keys.sh`; its header lists every file.
EOF
echo "make-test-attestation-keys: wrote $out" >&2
