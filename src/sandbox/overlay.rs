//! A step's root filesystem as an overlay, so a step can start from an
//! image root it must not change without copying it first.
//!
//! What it is for: a step whose [`StepRun::lower`] is set sees at `/` an
//! overlay of that directory (read-only, the lower layer) below
//! [`StepRun::rootfs`] (empty at the start, the upper layer: every file the
//! step creates, changes or removes lands there, removals as overlay
//! whiteouts). The overlay is mounted in the runtime's private mount
//! namespace ([`super::supervise::PrivateMounts`]), at [`MERGED`] in the
//! step's bundle, and the spec names that path as the root; the host never
//! sees the mount, and it goes when the runtime and the step's processes do.
//! The kernel's work directory is a temporary directory beside the upper
//! one (it must be on the same filesystem), removed after the run.
//!
//! Why an overlay: the image root a step starts from is hundreds of MiB
//! (a compiler toolchain), and extracting or copying it for every step run
//! cost seconds; an overlay costs a mount. The lower layer is the root
//! cache's verified entry (`crate::cache::RootCache`), which the kernel
//! never writes through an overlay: changes are copied up first.
//!
//! What the step sees differs from a plain directory in the ways Docker's
//! overlay storage differs, and build tools cope with them: renaming a
//! directory that came from the lower layer fails with `EXDEV` (no
//! `redirect_dir`), after which `mv` copies; inode numbers of files from
//! the lower layer change when they are copied up. Overlay attributes an
//! image's files carry (`trusted.overlay.*`, or `user.overlay.*` in a user
//! namespace) act on that image's own files only: a one-layer overlay has
//! nothing else to reach.
//!
//! Not for: deciding whether a build uses an overlay (`crate::build`, which
//! asks [`Sandbox::overlay_usable`] once per build and extracts the image
//! afresh when the answer is no), or what is in the lower layer.
//!
//! Invariants: the lower layer is never mounted writable; the upper and
//! work directories are the step's own; nothing is mounted in the host's
//! mount namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::supervise::{self, PrivateMounts};
use super::{step_namespace, Sandbox, StepRun};

/// Whether an overlay's options can name `path`: `,` `:` and `\\` cannot
/// be told apart from the option string's separators.
pub fn can_name(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    !path.as_os_str().as_bytes().iter().any(|b| matches!(b, b',' | b':' | b'\\'))
}

/// Where in a step's bundle its overlay root is mounted.
pub(super) const MERGED: &str = "rootfs";

/// The directories of one step's overlay root.
pub(super) struct OverlayRoot {
    lower: PathBuf,
    upper: PathBuf,
    merged: PathBuf,
    work: tempfile::TempDir,
}

impl OverlayRoot {
    /// The overlay for `step` over `lower`: its mount point made in
    /// `bundle`, its work directory beside the step's (empty) `rootfs`.
    pub(super) fn prepare(step: &StepRun, lower: &Path, bundle: &Path) -> Result<OverlayRoot> {
        let at = format!("step {:?}", step.name);
        let upper = fs::canonicalize(&step.rootfs)
            .with_context(|| format!("{at}: rootfs {} is not accessible", step.rootfs.display()))?;
        if fs::read_dir(&upper)?.next().is_some() {
            bail!("{at}: the overlay's upper directory {} is not empty", upper.display());
        }
        let lower = fs::canonicalize(lower)
            .with_context(|| format!("{at}: the image root {} is not accessible", lower.display()))?;
        let parent = upper.parent().context("the upper directory has a parent")?;
        let work =
            tempfile::Builder::new().prefix(".overlay-work-").tempdir_in(parent).with_context(|| {
                format!("{at}: cannot create an overlay work directory in {}", parent.display())
            })?;
        let merged = bundle.join(MERGED);
        fs::create_dir(&merged).with_context(|| format!("cannot create {}", merged.display()))?;
        Ok(OverlayRoot { lower, upper, merged, work })
    }

    /// `mounts` with this overlay added (`userxattr` in a user namespace).
    pub(super) fn mounts(&self, mounts: PrivateMounts, userxattr: bool) -> Result<PrivateMounts> {
        Ok(mounts.overlay(&self.merged, &self.lower, &self.upper, self.work.path(), userxattr)?)
    }
}

impl Drop for OverlayRoot {
    /// The kernel leaves `work/work` with mode 0, which a plain user could
    /// not list to remove: open it up first (the temporary directory then goes).
    fn drop(&mut self) {
        let inner = self.work.path().join("work");
        let _ = fs::set_permissions(inner, fs::Permissions::from_mode(0o700));
    }
}

impl Sandbox {
    /// Whether steps can have overlay roots here: an overlay is mounted
    /// in a private mount namespace (in the user namespace steps would run
    /// in) over an empty lower directory made in `lowers` and empty upper
    /// directories in `scratch` before the runtime's `--version` runs. No
    /// when the kernel lacks overlayfs, refuses it to this user, or cannot
    /// use those filesystems as lower and upper layers.
    pub fn overlay_usable(&self, scratch: &Path, lowers: &Path) -> bool {
        let made = fs::create_dir_all(lowers).and_then(|()| {
            let prefix = ".overlay-probe-";
            Ok((
                tempfile::Builder::new().prefix(prefix).tempdir_in(lowers)?,
                tempfile::Builder::new().prefix(prefix).tempdir_in(scratch)?,
            ))
        });
        let Ok((low, dir)) = made else { return false };
        let lower = low.path().to_path_buf();
        let [upper, work, merged] = ["upper", "work", "merged"].map(|d| dir.path().join(d));
        if [&upper, &work, &merged].iter().any(|d| fs::create_dir(d).is_err()) {
            return false;
        }
        let Ok(ns) = step_namespace() else { return false };
        let mut cmd = std::process::Command::new(self.runtime.program());
        cmd.arg("--version");
        if let Some(ns) = &ns {
            ns.enter(&mut cmd);
        }
        let userxattr = !crate::userns::Privilege::detect().is_root();
        let Ok(mounts) = PrivateMounts::default().overlay(&merged, &lower, &upper, &work, userxattr) else {
            return false;
        };
        let usable = supervise::can_mount(cmd, mounts);
        let _ = fs::set_permissions(work.join("work"), fs::Permissions::from_mode(0o700));
        usable
    }
}
