//! Fuzz target `layers`: `apply_layers` of arbitrary bytes as a layer blob
//! (tar, gzip or zstd, sniffed) onto a fresh directory; an odd first byte
//! applies the same blob twice, as two layers, to exercise replacement and
//! whiteouts of existing paths. Devices are skipped: the harness runs as
//! root and must not make device nodes.

use eifbake::oci::layer::{apply_layers, ApplyOptions, DevicePolicy, LayerSource};

fn main() {
    let opts = ApplyOptions {
        max_total_bytes: 64 << 20,
        max_entries: 10_000,
        same_owner: false,
        devices: DevicePolicy::Skip,
        xattrs: false,
    };
    afl::fuzz!(|data: &[u8]| {
        let blob = eifbake_fuzz::file("layer.blob", data);
        let target = eifbake_fuzz::scratch().join("rootfs");
        let layer = LayerSource::new(&blob, "application/octet-stream", "fuzz");
        let layers =
            if data.first().is_some_and(|b| b & 1 == 1) { vec![layer.clone(), layer] } else { vec![layer] };
        if apply_layers(&layers, &target, &opts).is_ok() {
            std::fs::remove_dir_all(&target).expect("removing the applied tree");
        }
    });
}
