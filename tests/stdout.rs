//! Every command that prints, with standard output a closed pipe or a full
//! disk (`/dev/full`): exit 2 and never a panic; nothing on standard error
//! for the closed pipe (the reader went away, as `| head` does), one line
//! naming standard output and the cause for the full disk.

mod common;
mod eif_common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` is an array of two ints for pipe2(2) to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn full_disk() -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
}

/// Run `make()` three ways: printing normally (exit `code`, some output),
/// into a closed pipe, and into a full disk.
fn check(what: &str, code: i32, make: impl Fn() -> Command) {
    let o = make().output().unwrap();
    assert_eq!(o.status.code(), Some(code), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty(), "{what} prints nothing, so this test proves nothing");

    let o = make().stdout(closed_pipe()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what} into a closed pipe: {err}");
    assert_eq!(err, "", "{what} into a closed pipe must say nothing");

    let o = make().stdout(full_disk()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what} into /dev/full: {err}");
    assert!(
        err.starts_with("eifbake: error: cannot write to standard output: No space left on device")
            && err.lines().count() == 1,
        "{what} into /dev/full: {err}"
    );
}

fn eifbake(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = eif_common::eifbake();
    for a in args {
        c.arg(a);
    }
    c
}

#[test]
fn format_commands_survive_a_closed_or_full_stdout() {
    let root = tempfile::tempdir().unwrap();
    let mut eifs = Vec::new();
    for (name, motd) in [("a", "hello\n"), ("b", "HELLO\n")] {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        eif_common::write_inputs(&dir, motd.as_bytes(), 0o100644);
        let args = eif_common::build_args(&dir, "image.eif");
        let o = eif_common::eifbake().args(&args).env("SOURCE_DATE_EPOCH", "1").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        eifs.push(dir.join("image.eif"));
    }
    let (a, b) = (&eifs[0], &eifs[1]);
    check("--help", 0, || eifbake(&[&"--help"]));
    check("completions", 0, || eifbake(&[&"completions", &"bash"]));
    check("man", 0, || eifbake(&[&"man"]));
    check("describe", 0, || eifbake(&[&"describe", a]));
    check("describe --json", 0, || eifbake(&[&"describe", &"--json", a]));
    check("diff", 1, || eifbake(&[&"diff", a, b]));
    check("diff --json", 1, || eifbake(&[&"diff", &"--json", a, b]));
    // Detached signing: the payload is binary output; attach prints the PCRs.
    check("sign-payload", 0, || eifbake(&[&"sign-payload", a]));
    let payload = eif_common::run(eif_common::eifbake().arg("sign-payload").arg(a)).stdout;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
    let (cert, key) = (data.join("signer1.pem"), data.join("signer1.key"));
    let signer = eifbake::signing::PemKeySigner::load(
        &cert,
        &key,
        eifbake::signing::Validity::Enforce,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let sig = root.path().join("sig.raw");
    std::fs::write(&sig, eifbake::signing::Signer::sign_es384(&signer, &payload).unwrap()).unwrap();
    let signed = root.path().join("signed.eif");
    check("attach-signature", 0, || {
        eifbake(&[&"attach-signature", a, &"--certificate", &cert, &"--signature", &sig, &"--out", &signed])
    });
    let dir = root.path().join("a");
    let out = root.path().join("again.eif");
    let eif_args = || {
        let mut args = eif_common::build_args(&dir, "x.eif");
        args.retain(|a| a != "--json");
        let at = args.iter().position(|a| a == "--output").unwrap();
        args[at + 1] = out.display().to_string();
        args
    };
    let eif = |extra: &[&str]| {
        let mut c = eifbake(&[]);
        c.args(eif_args()).args(extra).env("SOURCE_DATE_EPOCH", "1");
        c
    };
    check("eif", 0, || eif(&[]));
    check("eif --json", 0, || eif(&["--json"]));
    let tree = root.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/motd"), "hi\n").unwrap();
    let rd = root.path().join("rd.cpio");
    check("ramdisk", 0, || eifbake(&[&"ramdisk", &tree, &"--output", &rd]));
    check("ramdisk --json", 0, || eifbake(&[&"ramdisk", &tree, &"--output", &rd, &"--json"]));
}

#[test]
fn store_and_lock_survive_a_closed_or_full_stdout() {
    let reg = common::TestRegistry::start();
    let _fixtures = common::push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let recipe = common::write_recipe(proj.path(), "t", "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    let store = proj.path().join("store");
    let with_store = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = eifbake(&[&"--store", &store]);
        for a in args {
            c.arg(a);
        }
        c
    };
    check("lock", 0, || with_store(&[&"lock", &recipe]));
    check("lock --json", 0, || with_store(&[&"lock", &recipe, &"--json"]));
    check("fetch", 0, || with_store(&[&"fetch", &recipe]));
    check("store ls", 0, || with_store(&[&"store", &"ls"]));
    check("store ls --json", 0, || with_store(&[&"store", &"ls", &"--json"]));
    check("store gc --dry-run", 0, || with_store(&[&"store", &"gc", &"--dry-run"]));
}
