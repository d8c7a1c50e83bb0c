//! The benchmark's sections, each a function from the context to its typed
//! figures ([`crate::results`]); an error skips the section with its reason
//! and the others still run. The shell commands they time are the constants
//! here, which the report prints verbatim.
//!
//! Not for: rendering or judging the figures ([`crate::render`] does).
//!
//! Invariant: numbers are never made up: every figure comes from a command a
//! section ran in this run.

pub mod apps;
pub mod measure;
pub mod memory;
pub mod onepass;
pub mod pack;
pub mod pull;
pub mod sign;
pub mod unpack;

pub const EB_PACK_PLAIN: &str = r#""$EB" ramdisk "$TREE" -o "$P/eb.cpio" && "$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb.eif""#;
pub const SH_PACK_PLAIN: &str = r#"cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet >"$P/sh.cpio" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/sh.cpio" --output "$P/sh.eif" >/dev/null"#;
pub const EB_PACK_GZ: &str = r#""$EB" ramdisk --gzip "$TREE" -o "$P/eb.cpio.gz" && "$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio.gz" -o "$P/eb-gz.eif""#;
pub const SH_PACK_GZ: &str = r#"cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -n >"$P/sh.cpio.gz" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/sh.cpio.gz" --output "$P/sh-gz.eif" >/dev/null"#;
pub const SH_PACK_PIGZ: &str = r#"cd "$TREE" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | pigz -n >"$P/pigz.cpio.gz" && "$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/pigz.cpio.gz" --output "$P/pigz.eif" >/dev/null"#;

pub const SIGN_EB: &str = r#""$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null"#;
pub const SIGN_EB_UNSIGNED: &str = r#""$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" -o "$P/eb-unsigned.eif" >/dev/null"#;
pub const SIGN_AWS: &str = r#""$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$P/eb.cpio" --output "$P/aws-signed.eif" --signing-certificate "$SIGN_CERT" --private-key "$SIGN_KEY" >/dev/null"#;

pub const M_SHA: &str = r#""$BENCH" tool sha384-pass "$MEIF""#;
pub const M_SHA384SUM: &str = r#"sha384sum "$MEIF""#;
pub const M_DESCRIBE: &str = r#""$EB" describe "$MEIF""#;
pub const M_DESCRIBE_JSON: &str = r#""$EB" describe --json "$MEIF""#;
pub const M_AWS: &str = r#""$BENCH" tool aws-measure "$MEIF""#;

pub const UNPACK_TAR: &str =
    r#"mkdir "$U/tar" && for i in 1 2 3; do tar -xzf "$L/layer$i.tar.gz" -C "$U/tar" || exit 1; done"#;
pub const UNPACK_EB: &str =
    r#""$BENCH" tool apply-layers "$U/eb" "$L/layer1.tar.gz" "$L/layer2.tar.gz" "$L/layer3.tar.gz""#;

pub const PULL_SKOPEO: &str =
    r#"skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE" "oci:$PL/skopeo:bench""#;
pub const PULL_EB: &str = r#""$EB" --store "$PL/store" fetch "$RECIPE""#;

pub const APP_EB_BUILD: &str = r#"cd "$AP" && "$EB" --store "$AS" build recipes/rust-server --out "$AO""#;
pub const APP_EB_CHANGE: &str = r#"set -o pipefail; echo "// edited $(date +%s%N)" >>"$AP/recipes/rust-server/app/src/main.rs" && cd "$AP" && "$EB" --store "$AS" lock recipes/rust-server >/dev/null && "$EB" --store "$AS" build recipes/rust-server --out "$AO" | tee -a "$AW/change.log""#;
pub const APP_EB_VERIFY: &str = r#""$EB" --store "$AS" verify "$AO/rust-server.manifest.json" --source "app=$AP/recipes/rust-server/app" --pcrs "$AO/rust-server.pcrs" --eif "$AO/rust-server.eif""#;
pub const APP_BUILDAH: &str = r#"buildah --root "$BR/root" --runroot "$BR/run" --storage-driver overlay bud --quiet --layers --tls-verify=false --network none --runtime runc -f "$BC/Containerfile" -t localhost/rust-server:bench "$BC""#;
pub const APP_BUILDAH_CHANGE: &str = r#"echo "// edited $(date +%s%N)" >>"$BC/app/src/main.rs" && buildah --root "$BR/root" --runroot "$BR/run" --storage-driver overlay bud --quiet --layers --tls-verify=false --network none --runtime runc -f "$BC/Containerfile" -t localhost/rust-server:bench "$BC""#;

pub const ONEPASS_EB: &str = r#""$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$OD" --name onepass -o "$OP/e.eif" >/dev/null"#;
pub const ONEPASS_TWO_STEPS: &str = r#""$EB" ramdisk "$OD" -o "$OP/r.cpio" >/dev/null && "$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$OP/r.cpio" --name onepass -o "$OP/e2.eif" >/dev/null"#;
pub const ONEPASS_SHA384SUM: &str = r#"sha384sum "$OP/e.eif""#;
pub const ONEPASS_SHA: &str = r#""$BENCH" tool sha384-pass "$OP/e.eif""#;

/// Whether two files hold the same bytes.
pub fn same_bytes(a: &std::path::Path, b: &std::path::Path) -> anyhow::Result<bool> {
    Ok(std::fs::read(a)? == std::fs::read(b)?)
}
