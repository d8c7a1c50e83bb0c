#!/usr/bin/env bash
# Regenerate the seed corpus in corpus/ from the project's own test inputs:
# EIFs and ramdisks written by eifbake (plain, gzip, signed with the test
# certificate in tests/data/signing), cpio archives from GNU cpio (newc with
# 512-byte blocks, and the 070702 "crc" variant), OCI layers (tar, gzip,
# zstd) with whiteouts, links and pax records, and the project's recipes and
# lockfiles, the real attestation documents of tests/data/attestation, the
# Containerfiles of examples/, and simple-signing signatures made by
# `skopeo standalone-sign` with a throwaway gpg key (its public keyring and
# the signed manifest go to signature-key/, which the `signature` harness
# reads; a new run makes a new key, so seeds and keyring change together). Usage: fuzz/make-seeds.sh [PATH-TO-EIFBAKE] (default: the top
# crate's target/debug/eifbake). Seeds are small on purpose: AFL mutates
# small inputs best.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
eifbake=${1:-$top/target/debug/eifbake}
c=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$c"/{eif,cpio,layers,recipe,lock,attestation,containerfile,signature}
export SOURCE_DATE_EPOCH=1 EIFBAKE_NO_PROGRESS=1

# A 1 KiB "bzImage" (boot sector signature, HdrS, protocol 2.15) and a tree.
python3 - "$work" <<'PY'
import os, sys
w = sys.argv[1]
k = bytearray(1024)
k[0:2] = b"MZ"; k[0x1fe:0x200] = b"\x55\xaa"; k[0x202:0x206] = b"HdrS"; k[0x206:0x208] = (0x020f).to_bytes(2, "little")
open(f"{w}/bzImage", "wb").write(k)
open(f"{w}/linux.config", "w").write("#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.12.20 Kernel Configuration\n#\n")
for d in ["boot", "user/rootfs/etc", "user/rootfs/bin", "user/rootfs/usr/bin"]:
    os.makedirs(f"{w}/{d}", exist_ok=True)
open(f"{w}/boot/init", "w").write("#!/bin/sh\n"); os.chmod(f"{w}/boot/init", 0o755)
open(f"{w}/user/cmd", "w").write("/bin/hello\n")
open(f"{w}/user/env", "w").write("A=1\n")
open(f"{w}/user/rootfs/etc/motd", "w").write("hello\n")
os.symlink("../usr/bin/hello", f"{w}/user/rootfs/bin/hello")
open(f"{w}/user/rootfs/usr/bin/hello", "w").write("#!/bin/sh\necho hi\n")
os.link(f"{w}/user/rootfs/usr/bin/hello", f"{w}/user/rootfs/usr/bin/hi")
PY
"$eifbake" ramdisk "$work/boot" -o "$work/boot.cpio" >/dev/null
"$eifbake" ramdisk "$work/user" -o "$c/cpio/eifbake.cpio" >/dev/null
"$eifbake" ramdisk "$work/user" --gzip -o "$c/cpio/eifbake.cpio.gz" >/dev/null
(cd "$work/user" && find . | LC_ALL=C sort | cpio -o -H newc --quiet >"$c/cpio/gnu-newc.cpio")
(cd "$work/user" && find . | LC_ALL=C sort | cpio -o -H crc --quiet >"$c/cpio/gnu-crc.cpio")

eif() { "$eifbake" eif --kernel "$work/bzImage" --kernel-config "$work/linux.config" --cmdline "console=ttyS0" "$@" >/dev/null; }
eif --ramdisk "$work/boot.cpio" --ramdisk "$c/cpio/eifbake.cpio" --output "$c/eif/basic.eif"
eif --ramdisk "$work/boot.cpio" --ramdisk "$c/cpio/eifbake.cpio.gz" --output "$c/eif/gzip.eif"
s=$top/tests/data/signing
eif --ramdisk "$c/cpio/gnu-crc.cpio" --output "$c/eif/signed.eif" \
    --signing-certificate "$s/signer1.pem" --private-key "$s/signer1.key" --ignore-certificate-validity

# Layers: python's tarfile writes pax records, GNU long names, links, whiteouts.
python3 - "$work" "$c/layers" <<'PY'
import io, sys, tarfile
w, out = sys.argv[1], sys.argv[2]
def layer(name, fmt, members):
    with tarfile.open(f"{out}/{name}", "w", format=fmt) as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data) if data is not None else None)
def f(name, data=b"x\n", mode=0o644, **kw):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode
    for k, v in kw.items(): setattr(i, k, v)
    return (i, data)
def d(name): i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; return (i, None)
def l(name, target, kind=tarfile.SYMTYPE): i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; return (i, None)
layer("base.tar", tarfile.PAX_FORMAT, [d("etc"), f("etc/motd"), d("usr"), d("usr/bin"), f("usr/bin/sh", b"#!", 0o755),
      l("bin", "usr/bin"), l("usr/bin/ash", "usr/bin/sh", tarfile.LNKTYPE), f("tmp/setuid", b"", 0o4755)])
layer("whiteouts.tar", tarfile.GNU_FORMAT, [f("etc/.wh.motd", b""), d("usr/bin"), f("usr/bin/.wh..wh..opq", b""),
      f("usr/bin/" + "n" * 120, b"long name\n")])
i = tarfile.TarInfo("dev/null"); i.type = tarfile.CHRTYPE; i.devmajor, i.devminor = 1, 3
p = tarfile.TarInfo("fifo"); p.type = tarfile.FIFOTYPE
layer("special.tar", tarfile.PAX_FORMAT, [d("dev"), (i, None), (p, None), f("x", b"y" * 700, pax_headers={"SCHILY.xattr.user.a": "b"})])
PY
gzip -9n <"$c/layers/base.tar" >"$c/layers/base.tar.gz"
zstd -q -19 <"$c/layers/whiteouts.tar" >"$c/layers/whiteouts.tar.zst"

cp "$top/recipes/hello/recipe.toml" "$c/recipe/hello.toml"
cp "$top/recipes/hello-arm64/recipe.toml" "$c/recipe/hello-arm64.toml"
cp "$top/recipes/stagex-hello.toml" "$c/recipe/stagex-hello.toml"
cp "$top/lockfiles/stagex-hello.lock" "$c/lock/stagex-hello.lock"
for f in "$top"/recipes/*/*.lock "$top"/recipes/*.lock; do
    [ -e "$f" ] && cp "$f" "$c/lock/$(basename "$(dirname "$f")")-$(basename "$f")"
done
for f in "$top"/tests/data/attestation/*.b64; do
    base64 -d "$f" > "$c/attestation/$(basename "$f" .b64).cbor"
done
for f in "$top"/examples/*/Containerfile; do
    cp "$f" "$c/containerfile/$(basename "$(dirname "$f")")"
done
# The rest of the subset src/containerfile.rs reads, in one small file.
cat >"$c/containerfile/subset" <<'CF'
# syntax=docker/dockerfile:1
# escape=\
ARG BASE=registry.example/base:1
FROM ${BASE}@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS build
ENV A=1 B="two words"
WORKDIR /src
COPY --chmod=0755 a.sh b/ /src/
ADD --checksum=sha256:1111111111111111111111111111111111111111111111111111111111111111 https://example.org/x.tar /x.tar
RUN --network=none set -e; \
    echo "$A" \
      > /out
RUN ["/bin/sh", "-c", "true"]
FROM scratch
COPY --from=build /out /out
LABEL org.opencontainers.image.title="t"
USER 1000:1000
ENTRYPOINT ["/out"]
CMD ["--help"]
CF

# Signatures as a lookaside serves them (the same tools tests/trust.rs uses).
# The harness checks them against signature-key/: the reference below and
# the manifest's digest must stay as fuzz/src/lib.rs names them.
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg_() { gpg --batch --yes --quiet --pinentry-mode loopback --passphrase "" "$@"; }
fpr() { gpg_ --with-colons --list-keys "$1" | awk -F: '$1 == "fpr" {print $10; exit}'; }
gpg_ --quick-gen-key "Fuzz <fuzz@eifbake.test>" ed25519 sign never
gpg_ --quick-gen-key "Outsider <out@eifbake.test>" ed25519 sign never
key=$(fpr fuzz@eifbake.test)
k=$here/signature-key
mkdir -p "$k"
gpg_ --armor --export "$key" >"$k/keyring.asc"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}\n' >"$k/manifest.json"
ref=registry.example/fuzz/image:1
sign() { skopeo standalone-sign --output "$c/signature/$1" "$k/manifest.json" "$2" "$3"; }
sign good "$ref" "$key"
sign other-identity registry.example/fuzz/other:1 "$key"
sign outsider "$ref" "$(fpr out@eifbake.test)"
# An uncompressed message, and one whose signature expires, over a payload
# skopeo wrote (lookasides serve binary OpenPGP; an armored one is refused).
gpg_ --decrypt --output "$work/payload.json" "$c/signature/good" 2>/dev/null
gpg_ --local-user "$key" --compress-algo none --sign --output "$c/signature/uncompressed" "$work/payload.json"
gpg_ --local-user "$key" --default-sig-expire 10y --sign --output "$c/signature/expiring" "$work/payload.json"
gpgconf --kill gpg-agent
du -sh "$c"/*

