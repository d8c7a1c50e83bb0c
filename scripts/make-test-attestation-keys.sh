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
# shellcheck source=scripts/test-ca.sh
. "$here/test-ca.sh"
test_ca_init make-test-attestation-keys "${1:-$here/../tests/data/attestation/chain}" 2000 "\
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
keyUsage = critical, digitalSignature"

ec_key root P-384
ca_selfsign root "/O=eifbake tests/CN=eifbake fake nitro root (test only)" v3_root

for n in inter leaf inter-not-ca; do ec_key "$n" P-384; done
long="20200101000000Z 20991231235959Z"
# shellcheck disable=SC2086 # $long is two arguments
ca_sign inter inter "/O=eifbake tests/CN=eifbake fake nitro intermediate (test only)" root $long v3_inter
# shellcheck disable=SC2086
ca_sign leaf leaf "/O=eifbake tests/CN=eifbake fake enclave (test only)" inter $long v3_leaf
# shellcheck disable=SC2086
ca_sign inter-not-ca inter-not-ca "/O=eifbake tests/CN=eifbake not a CA (test only)" root $long v3_not_ca
# shellcheck disable=SC2086
ca_sign leaf-under-not-ca leaf "/O=eifbake tests/CN=eifbake fake enclave under a non-CA (test only)" \
  inter-not-ca $long v3_leaf
# shellcheck disable=SC2086
ca_sign inter-sha256 inter "/O=eifbake tests/CN=eifbake fake nitro intermediate (test only)" root $long v3_inter sha256
ca_sign leaf-expired leaf "/O=eifbake tests/CN=eifbake fake enclave (test only)" inter \
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
