# test-ca.sh: the openssl test CA that make-test-signing-keys.sh and
# make-test-attestation-keys.sh share. Sourced, not run.
#
# For: writing TEST-ONLY keys and certificates with explicit validity dates
# (`openssl ca -startdate/-enddate`) into a directory. Not for: any real key.
# Invariant: every file goes to $out; scratch files (CSRs, the CA database)
# stay in a temporary directory removed on exit.
#
#   test_ca_init TOOL OUTDIR SERIAL EXTENSIONS
#       needs the openssl CLI; sets $out (OUTDIR, made absolute) and $work;
#       writes the CA config: the shared sections, then EXTENSIONS (the
#       caller's [ v3_* ] sections), serials from SERIAL.
#   ec_key NAME CURVE                       $out/NAME.key, a new EC key
#   ca_selfsign NAME SUBJECT EXTENSIONS     $out/NAME.pem, self-signed with NAME.key, 2020..2099
#   ca_sign NAME KEY SUBJECT ISSUER START END EXTENSIONS [MD]
#       $out/NAME.pem for KEY.key, issued by ISSUER.pem/ISSUER.key (MD default sha384)

test_ca_init() {
  local tool=$1 serial=$3 extensions=$4
  mkdir -p "$2"
  out=$(cd "$2" && pwd)
  command -v openssl >/dev/null || { echo "$tool: the openssl CLI is needed" >&2; exit 2; }
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # $work is fixed now
  trap "rm -rf '$work'" EXIT
  mkdir -p "$work/certs"
  : > "$work/index.txt"
  echo "$serial" > "$work/serial"
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
$extensions
EOF
}

ec_key() { openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -out "$out/$1.key"; }

ca_selfsign() {
  openssl req -new -key "$out/$1.key" -subj "$2" -out "$work/$1.csr" -config "$work/ca.cnf"
  openssl ca -batch -selfsign -config "$work/ca.cnf" -notext -md sha384 -keyfile "$out/$1.key" \
    -startdate 20200101000000Z -enddate 20991231235959Z -extensions "$3" -in "$work/$1.csr" \
    -out "$out/$1.pem" 2>/dev/null
}

ca_sign() {
  openssl req -new -key "$out/$2.key" -subj "$3" -out "$work/$1.csr" -config "$work/ca.cnf"
  openssl ca -batch -config "$work/ca.cnf" -notext -md "${8:-sha384}" -cert "$out/$4.pem" -keyfile "$out/$4.key" \
    -startdate "$5" -enddate "$6" -extensions "$7" -in "$work/$1.csr" -out "$out/$1.pem" 2>/dev/null
}
