//! apps: a real application, recipes/rust-server (a Rust HTTP server with
//! two crates.io dependencies, compiled in the Debian Rust toolchain image),
//! built by eifbake and, from an equivalent Containerfile, by `buildah bud`:
//! cold build, no-op rebuild, rebuild after a one-line source change, and
//! eifbake's `verify`.
//!
//! Both start from the same four fixture images (busybox, kernel, init,
//! rust: scripts/make-*-image.sh, the toolchain cached under
//! target/fixtures/) in one loopback registry, and the same two crates:
//! eifbake downloads them through its `cargo_lock` source (from `file://`
//! copies of the host's cargo cache, the eifbake config's `[cargo]
//! download`); buildah, which has no such source, COPYs a vendor directory
//! this section assembles beforehand with the same code
//! ([`eifbake::cargo_vendor::vendor`]). The compile runs with no network in
//! both (eifbake's steps always; `buildah bud --network none`).
//!
//! Not for: judging the application (tests/apps.rs builds, verifies and
//! boots it).
//!
//! Invariants: the loopback registry stops when this section returns, also
//! on error; a cold run starts from an empty store (eifbake) or empty
//! storage (buildah) every time; every change run edits the source first,
//! so no run of it can be a cache hit.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use eifbake::cargo_vendor::{read_cargo_lock, vendor, LockedCrate};
use eifbake_testkit::oci::try_skopeo;
use eifbake_testkit::registry::LoopbackRegistry;

use super::*;
use crate::results::Apps;
use crate::run::{file_size, log, remove, Ctx};

const RECIPE: &str = "recipes/rust-server";
/// The app's files (its `target/` is left out, as the recipe's `ignore` does).
const APP_FILES: [&str; 4] = ["Cargo.toml", "Cargo.lock", "src/main.rs", "static/index.html"];

/// The Containerfile buildah builds: the recipe's step and enclave as
/// stages; `REG` is replaced by the loopback registry's address. The two
/// images buildah adds layers to are the `-history` copies ([`with_history`]).
pub const CONTAINERFILE: &str = r#"FROM REG/eifbake-demo/linux-cloud:6.1 AS kernel
FROM REG/eifbake-demo/init:1 AS init
FROM REG/eifbake-demo/rust:1.96-history AS build
COPY crates /src/crates
COPY app /src/app
WORKDIR /src/app
ENV CARGO_HOME=/tmp/cargo-home CARGO_TARGET_DIR=/tmp/target RUSTFLAGS="-C target-feature=+crt-static" SOURCE_DATE_EPOCH=1700000000
RUN cargo build --release --offline --locked --config /src/crates/cargo/config.toml && mkdir -p /out/bin && cp /tmp/target/release/rust-server /out/bin/rust-server
FROM REG/eifbake-demo/busybox:1.35-history
COPY --from=build /out/bin/rust-server /usr/bin/rust-server
COPY --from=init /init /init
COPY --from=kernel /bzImage /linux.config /boot/
CMD ["/usr/bin/rust-server"]
"#;

pub fn run(ctx: &mut Ctx) -> Result<Apps> {
    for tool in ["buildah", "crun", "docker-registry", "skopeo"] {
        if ctx.sh(&format!("command -v {tool}")).is_err() {
            bail!("{tool} is not installed (scripts/deps.sh installs it).");
        }
    }
    if ctx.sh("[ \"$(id -u)\" = 0 ]").is_err() {
        bail!("needs root (eifbake's steps and buildah run containers).");
    }
    let aw = ctx.work.join("apps");
    remove_storage(&aw)?; // also what an interrupted run left mounted
    fs::create_dir_all(&aw)?;
    ctx.set("AW", &aw);
    ctx.set("AP", aw.join("project"));
    ctx.set("AS", aw.join("store"));
    ctx.set("AO", aw.join("out"));
    ctx.set("BC", aw.join("buildah-context"));
    ctx.set("BR", aw.join("buildah"));
    let reg = LoopbackRegistry::try_start(None)?;
    let r = prepare(ctx, &aw, &reg.addr).and_then(|()| measure(ctx, &aw));
    drop(reg);
    // buildah leaves its overlay storage mounted: unmount it, also on error.
    let cleaned = remove_storage(&aw.join("buildah"));
    if r.is_ok() {
        // The toolchain image is hundreds of MiB, in the store and buildah's storage.
        cleaned?;
        remove(&aw)?;
    }
    r
}

/// Unmount whatever buildah left mounted under `dir` (its overlay home and
/// layers), innermost first, then remove `dir`.
fn remove_storage(dir: &Path) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let mut under: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let ok = std::process::Command::new("umount").args(["-l", &m]).status().is_ok_and(|s| s.success());
        if !ok {
            bail!("cannot unmount {m} (left mounted by buildah); unmount it by hand");
        }
    }
    remove(dir)
}

/// Images pushed, the project copied and locked, the crates ready for both.
fn prepare(ctx: &mut Ctx, aw: &Path, reg: &str) -> Result<()> {
    log("apps: fixture images (the Rust toolchain image is cached under target/fixtures)");
    ctx.set("KDIR", ctx.root.join("target/fixtures/kernel"));
    ctx.set("ROOT", ctx.root.clone());
    ctx.sh(IMAGES).context("making the fixture images failed")?;
    for (name, repo, tag) in [
        ("busybox", "busybox", "1.35"),
        ("kernel", "linux-cloud", "6.1"),
        ("init", "init", "1"),
        ("rust", "rust", "1.96"),
    ] {
        let layout = aw.join("images").join(name);
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{reg}/eifbake-demo/{repo}:{tag}");
        try_skopeo(&["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", &src, &dst])?;
        if matches!(name, "busybox" | "rust") {
            let copy = aw.join("images").join(format!("{name}-history"));
            with_history(&layout, &copy)?;
            let src = format!("oci:{}:{tag}", copy.display());
            let dst = format!("docker://{reg}/eifbake-demo/{repo}:{tag}-history");
            try_skopeo(&["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", &src, &dst])?;
        }
    }
    let src = ctx.root.join(RECIPE);
    let dest = aw.join("project").join(RECIPE);
    copy_app(&src.join("app"), &dest.join("app"))?;
    let recipe = fs::read_to_string(src.join("recipe.toml"))?.replace("127.0.0.1:5055", reg);
    fs::write(dest.join("recipe.toml"), recipe)?;

    let crates = read_cargo_lock(&src.join("app/Cargo.lock"))?;
    let template = crate_files(&crates, &aw.join("crates"))?;
    let config = aw.join("eifbake.toml");
    fs::write(&config, format!("[cargo]\ndownload = {template:?}\n"))?;
    ctx.set("EIFBAKE_CONFIG", &config);
    // Locked with a store of its own, dropped: the cold builds find nothing.
    ctx.sh(r#"cd "$AP" && "$EB" --store "$AW/lock-store" lock recipes/rust-server >/dev/null && rm -rf "$AW/lock-store""#)
        .context("`eifbake lock` failed")?;

    let bc = aw.join("buildah-context");
    copy_app(&src.join("app"), &bc.join("app"))?;
    vendor("crates", "app/Cargo.lock", &crates, &template, &bc.join("crates"))?;
    fs::write(bc.join("Containerfile"), CONTAINERFILE.replace("REG", reg))?;
    Ok(())
}

/// A copy at `to` of the one-manifest OCI layout `from` whose config gains a
/// `history` entry per layer. buildah 1.28 with `--layers` cannot commit a
/// step on a base image without history ("history lists 2 non-empty
/// layers, but we have 3 layers on disk"), and the fixture images have
/// none. The layer blobs are the same: only the config, and so the
/// manifest and its digest, differ.
fn with_history(from: &Path, to: &Path) -> Result<()> {
    remove(to)?;
    let cp = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !cp.success() {
        bail!("cp -a {} {} failed", from.display(), to.display());
    }
    let blob = |d: &str| to.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let put = |bytes: Vec<u8>| -> Result<serde_json::Value> {
        let hex = eifbake::digest::Digest::of(&bytes).hex();
        fs::write(to.join("blobs/sha256").join(&hex), &bytes)?;
        Ok(serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()}))
    };
    let read = |p: &Path| -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&fs::read(p).with_context(|| format!("read {}", p.display()))?)?)
    };
    let mut index = read(&to.join("index.json"))?;
    let entry = &mut index["manifests"][0];
    let mut manifest = read(&blob(entry["digest"].as_str().context("index.json: no manifest digest")?))?;
    let mut config = read(&blob(manifest["config"]["digest"].as_str().context("manifest: no config")?))?;
    let layers = manifest["layers"].as_array().map_or(0, Vec::len);
    let entries = vec![serde_json::json!({"created_by": "scripts/oci-layout-from-dir.sh"}); layers];
    config["history"] = serde_json::Value::Array(entries);
    let c = put(serde_json::to_vec(&config)?)?;
    manifest["config"]["digest"] = c["digest"].clone();
    manifest["config"]["size"] = c["size"].clone();
    let m = put(serde_json::to_vec(&manifest)?)?;
    entry["digest"] = m["digest"].clone();
    entry["size"] = m["size"].clone();
    fs::write(to.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// The fixture images of recipes/rust-server, as tests/apps.rs makes them.
const IMAGES: &str = r#"set -e
export EIFBAKE_KERNEL_DIR="$KDIR"
S="$ROOT/scripts" I="$AW/images"
mkdir -p "$I/init-root"
"$S/make-busybox-image.sh" "$I/busybox" 1.35 >/dev/null
"$S/make-kernel-image.sh" "$I/kernel" 6.1 >/dev/null
cp "$ROOT/recipes/hello/init/init" "$I/init-root/init"
chmod 0755 "$I/init-root" "$I/init-root/init"
"$S/oci-layout-from-dir.sh" "$I/init-root" "$I/init" 1 >/dev/null
"$S/make-rust-image.sh" "$I/rust" 1.96 >/dev/null"#;

fn copy_app(from: &Path, to: &Path) -> Result<()> {
    for f in APP_FILES {
        let dest = to.join(f);
        fs::create_dir_all(dest.parent().expect("a file in a directory"))?;
        fs::copy(from.join(f), &dest).with_context(|| format!("copy {}", from.join(f).display()))?;
    }
    Ok(())
}

/// The `.crate` files of `crates` from the host's cargo cache into
/// `dir/NAME/NAME-VERSION.crate`; returns the `file://` download template.
fn crate_files(crates: &[LockedCrate], dir: &Path) -> Result<String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let cache = home.join("registry/cache");
    for c in crates {
        let name = format!("{}-{}.crate", c.name, c.version);
        let found = fs::read_dir(&cache)
            .with_context(|| format!("read {}", cache.display()))?
            .filter_map(|e| e.ok().map(|e| e.path().join(&name)))
            .find(|p| p.is_file())
            .with_context(|| {
                format!("{name} is not in {}/*/ (building eifbake puts it there)", cache.display())
            })?;
        fs::create_dir_all(dir.join(&c.name))?;
        fs::copy(&found, dir.join(&c.name).join(&name))?;
    }
    Ok(format!("file://{}/{{crate}}/{{crate}}-{{version}}.crate", dir.display()))
}

/// The timed runs, in the order a developer meets them.
fn measure(ctx: &Ctx, aw: &Path) -> Result<Apps> {
    let runs = ctx.app_runs;
    log(&format!("apps: {runs} runs each (cold builds compile the app every time)"));
    let failed = |e: anyhow::Error| e.context("an apps command failed");
    let (store, out, br) = (aw.join("store"), aw.join("out"), aw.join("buildah"));
    let eb_cold = ctx.timed("app_eb_cold", runs, APP_EB_BUILD, &[&store, &out]).map_err(failed)?;
    let cold_step_s = step_seconds(&ctx.stdout_of("app_eb_cold")?)?;
    let eb_noop = ctx.timed("app_eb_noop", runs, APP_EB_BUILD, &[]).map_err(failed)?;
    if ctx.stdout_of("app_eb_noop")?.contains(": ran") {
        bail!("the no-op rebuild ran a step:\n{}", ctx.stdout_of("app_eb_noop")?);
    }
    let eb_change = ctx.timed("app_eb_change", runs, APP_EB_CHANGE, &[]).map_err(failed)?;
    let change_log = fs::read_to_string(aw.join("change.log"))?;
    // One compile line per run, in run order.
    let change_step_s: Vec<f64> = change_log
        .lines()
        .filter(|l| l.starts_with("step compile: ran"))
        .map(step_seconds)
        .collect::<Result<_>>()?;
    if change_step_s.len() != eb_change.wall_ns.len() {
        bail!("expected one compile per change run in {}:\n{change_log}", aw.join("change.log").display());
    }
    let eb_verify = ctx.timed("app_eb_verify", runs, APP_EB_VERIFY, &[]).map_err(failed)?;
    if !ctx.stdout_of("app_eb_verify")?.starts_with("GOOD") {
        bail!("eifbake verify did not say GOOD:\n{}", ctx.stdout_of("app_eb_verify")?);
    }
    let eif_bytes = file_size(&out.join("rust-server.eif"))?;
    let buildah_cold =
        ctx.timed_with("app_buildah_cold", runs, APP_BUILDAH, || remove_storage(&br)).map_err(failed)?;
    let buildah_noop = ctx.timed("app_buildah_noop", runs, APP_BUILDAH, &[]).map_err(failed)?;
    let buildah_change = ctx.timed("app_buildah_change", runs, APP_BUILDAH_CHANGE, &[]).map_err(failed)?;
    let image_bytes = ctx
        .sh(r#"buildah --root "$BR/root" --runroot "$BR/run" --storage-driver overlay images --format '{{.Size}}' localhost/rust-server:bench"#)
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(Apps {
        runs,
        eb_cold,
        eb_noop,
        eb_change,
        eb_verify,
        buildah_cold,
        buildah_noop,
        buildah_change,
        cold_step_s,
        change_step_s,
        eif_bytes,
        buildah_image_size: image_bytes,
    })
}

/// The compile step's sandbox seconds from `eifbake build`'s output
/// (`step compile: ran (S s in the sandbox)`).
fn step_seconds(stdout: &str) -> Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("step compile: ran (")?.strip_suffix(" s in the sandbox)"))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no `step compile: ran (S s in the sandbox)` line in:\n{stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seconds_reads_the_build_output() {
        let out = "step compile: ran (12.50 s in the sandbox)\nabc  out/x.eif  (3 bytes)\n";
        assert_eq!(step_seconds(out).unwrap(), 12.5);
        assert!(step_seconds("step compile: cached\n").is_err());
    }
}
