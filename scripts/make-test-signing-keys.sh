#!/usr/bin/env bash
# make-test-signing-keys.sh [OUTDIR]
#
# TEST-ONLY keys and certificates for eifbake's signing tests, written into
# OUTDIR (default tests/data/signing). They are generated once and checked
# in: the signed-EIF golden values depend on them, so regenerating changes
# tests/golden/eif-signed.json (run `make golden` afterwards and review).
# Never use these keys for anything but tests: the private keys are public.
#
# Needs the openssl CLI (3.0 or later). Every certificate is issued by a
# test CA with explicit validity dates (`openssl ca -startdate/-enddate`):
#
#   ca.pem ca.key                      test CA, P-384, 2020-01-01..2099-12-31
#   signer1.pem signer1.key            P-384, 2020..2099, keyUsage digitalSignature (PKCS#8 key)
#   signer1.sec1.key                   the same key in SEC1 form (BEGIN EC PRIVATE KEY)
#   signer2.pem signer2.key            a second P-384 pair, 2020..2099
#   expired.pem expired.key            P-384, valid 2000-01-01..2001-01-01 only
#   future.pem future.key              P-384, valid 2090-01-01..2099-12-31 only
#   p256.pem p256.key                  P-256 (not accepted: eifbake signs with ES384)
#   rsa.pem rsa.key                    RSA 2048 (not accepted)
#   no-digital-signature.pem .key      P-384, keyUsage keyAgreement only
#   chain.pem                          signer1.pem followed by ca.pem (two certificates)
#   signer1.crlf.pem                   signer1.pem with CRLF line ends and 76-column base64
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/test-ca.sh
. "$here/test-ca.sh"
test_ca_init make-test-signing-keys "${1:-$here/../tests/data/signing}" 1000 "\
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_signer ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_no_digital_signature ]
basicConstraints = critical, CA:false
keyUsage = critical, keyAgreement
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"

# sign NAME SUBJECT START END EXTENSIONS: NAME.key's certificate, issued by the test CA
sign() { ca_sign "$1" "$1" "$2" ca "$3" "$4" "$5"; }

ec_key ca P-384
ca_selfsign ca "/O=eifbake tests/CN=eifbake test CA (test only)" v3_ca

for n in signer1 signer2 expired future no-digital-signature; do ec_key "$n" P-384; done
ec_key p256 P-256
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out/rsa.key" 2>/dev/null

sign signer1 "/O=eifbake tests/CN=eifbake test signer 1 (test only)" 20200101000000Z 20991231235959Z v3_signer
sign signer2 "/O=eifbake tests/CN=eifbake test signer 2 (test only)" 20200101000000Z 20991231235959Z v3_signer
sign expired "/O=eifbake tests/CN=eifbake expired signer (test only)" 20000101000000Z 20010101000000Z v3_signer
sign future "/O=eifbake tests/CN=eifbake future signer (test only)" 20900101000000Z 20991231235959Z v3_signer
sign p256 "/O=eifbake tests/CN=eifbake P-256 signer (test only)" 20200101000000Z 20991231235959Z v3_signer
sign rsa "/O=eifbake tests/CN=eifbake RSA signer (test only)" 20200101000000Z 20991231235959Z v3_signer
sign no-digital-signature "/O=eifbake tests/CN=eifbake key-agreement-only (test only)" \
  20200101000000Z 20991231235959Z v3_no_digital_signature

openssl ec -in "$out/signer1.key" -out "$out/signer1.sec1.key" 2>/dev/null
cat "$out/signer1.pem" "$out/ca.pem" > "$out/chain.pem"
# The same certificate, formatted differently: eifbake must store the same bytes for both.
{
  echo "-----BEGIN CERTIFICATE-----"
  openssl x509 -in "$out/signer1.pem" -outform DER | base64 -w 76
  echo "-----END CERTIFICATE-----"
} | sed 's/$/\r/' > "$out/signer1.crlf.pem"

cat > "$out/README.md" <<'EOF'
# Test-only signing keys

TEST ONLY: these private keys are public. They exist for eifbake's signing
tests (`tests/signing.rs`, `tests/aws_oracle.rs`, `tests/eif_golden.rs`) and
must never sign anything else. Regenerate them with
`bash scripts/make-test-signing-keys.sh` (then `make golden`, since the signed
golden EIF depends on signer1); the script's header lists every file.
EOF
echo "make-test-signing-keys: wrote $out" >&2
