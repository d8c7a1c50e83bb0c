//! Root steps ([`Step::root`], what Containerfile instructions lower to):
//! making the root filesystem a root step starts from, doing its copies, and
//! turning what it leaves into its output.
//!
//! What it is for: `root = "image"` (a fresh copy of the step's image, as
//! for any step), `"scratch"` (empty) or `"step:NAME"` (an exact copy of an
//! earlier root step's output, so each step's output is the next one's
//! input, untouched); then each [`CopyOp`], done by eifbake, never by a
//! program of the image. After the step's script (if any) ran, the mount
//! points the runtime had to create (`/proc`, `/sys`, `/dev`, `/tmp`,
//! `/out`, `/etc/resolv.conf`) are removed again when they are still empty,
//! and the root becomes the step's output. Before the script runs, every
//! time in the root is SOURCE_DATE_EPOCH (copies would otherwise carry the
//! clock of the build).
//!
//! Not for: running the script (the sandbox) or keys and caching
//! (`crate::build`).
//!
//! Invariants: nothing is ever resolved through a symlink to outside the
//! root being written or read: guest paths are resolved one component at a
//! time inside their root ([`resolve_in_root`]), as a chroot would; a
//! step's earlier outputs are only read, never written.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::ImageTrees;
use crate::digest::Digest;
use crate::fsutil::{copy_tree, CopyModes};
use crate::oci::layer::ApplyOptions;
use crate::recipe::{CopyOp, Step};

/// Mount points the runtime creates in a root when they are missing.
const MOUNT_POINTS: [&str; 6] = ["proc", "sys", "dev", "tmp", "out", "etc/resolv.conf"];

/// What a root step's copies read from: earlier steps' outputs and the sources.
pub(super) struct RootInputs<'a> {
    pub prior: &'a BTreeMap<String, (PathBuf, Digest)>,
    pub source_dirs: &'a BTreeMap<String, PathBuf>,
    /// SOURCE_DATE_EPOCH: every modification time in a prepared root.
    pub epoch: crate::epoch::Epoch,
}

/// Make `rootfs` for root step `step`: its root, then its copies. Returns
/// the mount points that were missing (see [`finish`]).
pub(super) fn prepare(
    step: &Step,
    rootfs: &Path,
    images: &ImageTrees<'_>,
    inputs: &RootInputs<'_>,
    no_devices: &ApplyOptions,
) -> Result<Vec<&'static str>> {
    let root = step.root.as_deref().expect("a root step");
    if let Some(p) = rootfs.parent() {
        fs::create_dir_all(p)?;
    }
    match root.strip_prefix("step:") {
        Some(prev) => copy_tree(&inputs.prior[prev].0, rootfs, &[], CopyModes::Exact)
            .with_context(|| format!("step {:?}: copying the root of step {prev:?}", step.name))?,
        None if root == "scratch" => fs::create_dir(rootfs)?,
        None => {
            images.extract_fresh(&step.image, rootfs, no_devices)?;
        }
    }
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755))?;
    for (j, op) in step.copy.iter().enumerate() {
        copy_op(rootfs, op, images, inputs, no_devices, &rootfs.with_file_name(format!("copy-from-{j}")))
            .with_context(|| format!("step {:?}: copy[{j}] to {}", step.name, op.dst))?;
    }
    clamp_times(rootfs, inputs.epoch)?;
    let missing = MOUNT_POINTS.into_iter().filter(|m| rootfs.join(m).symlink_metadata().is_err()).collect();
    match rootfs.join("out").symlink_metadata() {
        Ok(m) if !m.is_dir() => {
            bail!("step {:?}: /out in its root is not a directory; the step's /out is a directory", step.name)
        }
        _ => Ok(missing),
    }
}

/// Set the modification and access time of every entry of `root` (not
/// following symlinks) to `epoch`: what a step reads of its root's times
/// is the same on every build, whenever its files were copied or cached.
fn clamp_times(root: &Path, epoch: crate::epoch::Epoch) -> Result<()> {
    use rustix::fs::{utimensat, AtFlags, Timestamps, CWD};
    let t = rustix::fs::Timespec { tv_sec: epoch.0 as _, tv_nsec: 0 };
    let times = Timestamps { last_access: t, last_modification: t };
    // Children first, so setting a directory's time is its last change.
    for e in walkdir::WalkDir::new(root).follow_links(false).contents_first(true) {
        let e = e.with_context(|| format!("cannot walk {}", root.display()))?;
        utimensat(CWD, e.path(), &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot set the times of {}", e.path().display()))?;
    }
    Ok(())
}

/// After the run: remove the mount points the runtime created that are
/// still empty, then move the root to `out_dir`, the step's output.
pub(super) fn finish(rootfs: &Path, missing: &[&str], out_dir: &Path) -> Result<()> {
    for m in missing.iter().rev() {
        let p = rootfs.join(m);
        match p.symlink_metadata() {
            Ok(md) if md.is_dir() => {
                let _ = fs::remove_dir(&p); // only when empty
            }
            Ok(md) if md.is_file() && md.len() == 0 => fs::remove_file(&p)?,
            _ => {}
        }
    }
    fs::rename(rootfs, out_dir)
        .with_context(|| format!("cannot move {} to {}", rootfs.display(), out_dir.display()))
}

/// One [`CopyOp`] into `root`; `scratch` is where an image source is extracted.
fn copy_op(
    root: &Path,
    op: &CopyOp,
    images: &ImageTrees<'_>,
    inputs: &RootInputs<'_>,
    no_devices: &ApplyOptions,
    scratch: &Path,
) -> Result<()> {
    let mode = op.mode.as_deref().map(|m| u32::from_str_radix(m, 8).expect("validated octal mode"));
    let Some(from) = &op.from else {
        mkdir_p(root, &op.dst)?;
        return Ok(());
    };
    let src_root = match from.split_once(':') {
        Some(("source", n)) => inputs.source_dirs[n].clone(),
        Some(("step", n)) => inputs.prior[n].0.clone(),
        Some(("image", n)) => {
            images.extract_fresh(n, scratch, no_devices)?;
            scratch.to_path_buf()
        }
        _ => unreachable!("validated copy source"),
    };
    // BuildKit and buildah keep the owners of what is copied from a stage
    // or an image; files from the context belong to root.
    let keep_owner = !from.starts_with("source:");
    let into_dir = op.dst.ends_with('/');
    for src in &op.src {
        let host = resolve_in_root(&src_root, src, true)?;
        let md = fs::symlink_metadata(&host).with_context(|| format!("{from}: no {src}"))?;
        if md.is_dir() {
            mkdir_p(root, &op.dst)?;
            merge_dir(&host, root, op.dst.trim_end_matches('/'), mode, keep_owner)?;
            continue;
        }
        if op.no_archives && is_archive(&host)? {
            bail!(
                "{src} is an archive, which a Containerfile's ADD would unpack and eifbake does not; \
                 COPY it and unpack it with RUN, or give the unpacked files"
            );
        }
        let name = Path::new(src.trim_end_matches('/')).file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| "file".into());
        let dst_is_dir = resolve_in_root(root, &op.dst, true).is_ok_and(|p| p.is_dir());
        let guest = if into_dir || dst_is_dir {
            mkdir_p(root, &op.dst)?;
            format!("{}/{name}", op.dst.trim_end_matches('/'))
        } else {
            let parent = Path::new(&op.dst).parent().and_then(Path::to_str).unwrap_or("/").to_string();
            mkdir_p(root, &parent)?;
            op.dst.clone()
        };
        copy_entry(&host, &md, &resolve_in_root(root, &guest, false)?, mode, keep_owner)?;
    }
    if from.starts_with("image:") {
        let _ = fs::remove_dir_all(scratch);
    }
    Ok(())
}

/// Copy the contents of `src` into the directory `dst_guest` of `root`
/// (merging with what is there), `mode` over every entry copied.
fn merge_dir(src: &Path, root: &Path, dst_guest: &str, mode: Option<u32>, keep_owner: bool) -> Result<()> {
    let mut dirs = Vec::new();
    for entry in walkdir::WalkDir::new(src).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", src.display()))?;
        let rel = entry.path().strip_prefix(src).expect("under src").to_string_lossy().into_owned();
        let md = entry.path().symlink_metadata()?;
        let guest = format!("{dst_guest}/{rel}");
        if md.is_dir() {
            let host = resolve_in_root(root, &guest, true)?;
            match host.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&host)?;
                    fs::create_dir(&host)?;
                }
                Err(_) => fs::create_dir(&host)?,
            }
            if keep_owner {
                owner_of(&host, &md)?;
            }
            dirs.push((host, mode.unwrap_or(md.permissions().mode() & 0o7777)));
        } else {
            copy_entry(entry.path(), &md, &resolve_in_root(root, &guest, false)?, mode, keep_owner)?;
        }
    }
    for (d, m) in dirs.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(*m))?;
    }
    Ok(())
}

/// Give `to` the owner `md` records (not following a symlink); only root
/// can, and a build that is not root keeps its own, as `cp -a` does.
fn owner_of(to: &Path, md: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid()))
            .with_context(|| format!("cannot chown {}", to.display()))?;
    }
    Ok(())
}

/// Copy one file or symlink to `to` (replacing a file or symlink there),
/// with `md`'s owner when `keep_owner`.
fn copy_entry(from: &Path, md: &fs::Metadata, to: &Path, mode: Option<u32>, keep_owner: bool) -> Result<()> {
    match to.symlink_metadata() {
        Ok(m) if m.is_dir() => bail!("{}: a directory is in the way of a file", to.display()),
        Ok(_) => fs::remove_file(to)?,
        Err(_) => {}
    }
    if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)
            .with_context(|| format!("cannot create symlink {}", to.display()))?;
        return if keep_owner { owner_of(to, md) } else { Ok(()) };
    }
    if !md.is_file() {
        bail!("{}: only regular files, directories and symlinks can be copied", from.display());
    }
    fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    if keep_owner {
        owner_of(to, md)?;
    }
    let m = mode.unwrap_or(md.permissions().mode() & 0o7777);
    fs::set_permissions(to, fs::Permissions::from_mode(m))?;
    Ok(())
}

/// Create directory `guest` of `root` and its missing parents (mode 0755),
/// resolving symlinks inside `root`.
fn mkdir_p(root: &Path, guest: &str) -> Result<()> {
    let mut sofar = String::new();
    for c in guest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        sofar.push('/');
        sofar.push_str(c);
        let host = resolve_in_root(root, &sofar, true)?;
        match host.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{sofar} exists and is not a directory"),
            Err(_) => {
                fs::create_dir(&host).with_context(|| format!("cannot create {}", host.display()))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    Ok(())
}

/// The host path of `guest` inside `root`, resolving symlinks (the last
/// component's only with `follow_last`) as if `root` were `/`: an absolute
/// target restarts at `root`, `..` never climbs above it.
pub(super) fn resolve_in_root(root: &Path, guest: &str, follow_last: bool) -> Result<PathBuf> {
    let mut todo: Vec<String> = guest.split('/').rev().map(str::to_string).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let host: PathBuf = root.join(done.join("/")).join(&c);
        let last = todo.iter().all(|t| t.is_empty() || t == ".");
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !last) => {
                hops += 1;
                if hops > 40 {
                    bail!("{guest}: too many levels of symbolic links");
                }
                let target = fs::read_link(&host)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
            _ => done.push(c),
        }
    }
    Ok(root.join(done.join("/")))
}

/// Whether the file starts like an archive ADD would unpack (tar, gzip, bzip2, xz, zstd).
fn is_archive(path: &Path) -> Result<bool> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path)?;
    let n = crate::fsutil::read_full(&mut f, &mut head)?;
    let h = &head[..n];
    Ok(h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("up")).unwrap();
        assert_eq!(resolve_in_root(root, "/bin/sh", false).unwrap(), root.join("usr/bin/sh"));
        assert_eq!(resolve_in_root(root, "/escape/passwd", false).unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "/up/passwd", true).unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "/bin", false).unwrap(), root.join("bin"));
        mkdir_p(root, "/escape/x").unwrap();
        assert!(root.join("etc/x").is_dir(), "created inside the root, not on the host");
    }
}
