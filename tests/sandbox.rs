//! The sandbox runs real steps with crun (as root, as CI does) in a busybox
//! root filesystem, and checks what a step can and cannot see and do.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eifbake::epoch::Epoch;
use eifbake::sandbox::{Bind, Runtime, Sandbox, StepRun};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        common::rootfs::busybox_rootfs(&dir.path().join("rootfs"));
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn step(&self, script: &str) -> StepRun {
        StepRun {
            name: "test-step".into(),
            rootfs: self.path("rootfs"),
            mounts: vec![],
            workdir: "/".into(),
            script: script.into(),
            env: BTreeMap::new(),
            epoch: Epoch(1700000000),
            out_dir: self.path("out"),
            log: self.path("step.log"),
            timeout: Duration::from_secs(60),
        }
    }
}

fn run(step: &StepRun) -> anyhow::Result<eifbake::sandbox::StepReport> {
    Sandbox::new(Runtime::Crun).run(step)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn step_output_appears_in_out() {
    let f = Fixture::new();
    let s = f.step("echo hello > /out/a; mkdir /out/d; printf 'x\\ny' > /out/d/b; echo done");
    let report = run(&s).unwrap();
    assert_eq!(report.out_dir, fs::canonicalize(f.path("out")).unwrap());
    assert_eq!(fs::read_to_string(f.path("out/a")).unwrap(), "hello\n");
    assert_eq!(fs::read_to_string(f.path("out/d/b")).unwrap(), "x\ny");
    assert_eq!(fs::read_to_string(f.path("step.log")).unwrap(), "done\n");
    assert_eq!(report.output_bytes, 5);
}

#[test]
fn environment_is_exactly_the_fixed_set_plus_step_env() {
    let f = Fixture::new();
    let mut s = f.step("tr '\\0' '\\n' < /proc/1/environ | sort > /out/env; hostname > /out/host; umask > /out/umask; id -u > /out/uid; id -g >> /out/uid; pwd > /out/pwd");
    s.env.insert("GREETING".into(), "hi there".into());
    s.workdir = "/root".into();
    run(&s).unwrap();
    assert_eq!(
        fs::read_to_string(f.path("out/env")).unwrap(),
        "GREETING=hi there\nHOME=/root\nLANG=C\nLC_ALL=C\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         SOURCE_DATE_EPOCH=1700000000\nTZ=UTC\n"
    );
    assert_eq!(fs::read_to_string(f.path("out/host")).unwrap(), "eifbake\n");
    assert_eq!(fs::read_to_string(f.path("out/umask")).unwrap(), "0022\n");
    assert_eq!(fs::read_to_string(f.path("out/uid")).unwrap(), "0\n0\n");
    assert_eq!(fs::read_to_string(f.path("out/pwd")).unwrap(), "/root\n");
}

#[test]
fn files_written_get_umask_022_modes() {
    let f = Fixture::new();
    run(&f.step("echo x > /out/f; mkdir /out/d")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(f.path("out/f")).unwrap().permissions().mode() & 0o7777, 0o644);
    assert_eq!(fs::metadata(f.path("out/d")).unwrap().permissions().mode() & 0o7777, 0o755);
}

#[test]
fn no_network_even_to_host_loopback() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let f = Fixture::new();
    // Record the interfaces, then try to reach the host's loopback server.
    let s = f.step(&format!(
        "for i in $(tail -n +3 /proc/net/dev | cut -d: -f1); do echo if:$i; done; \
         echo hello | nc -w 3 127.0.0.1 {port}; echo reached"
    ));
    let err = run(&s).unwrap_err().to_string();
    assert!(err.contains("failed: exit code"), "{err}");
    assert!(err.contains("| if:lo\n"), "{err}");
    assert_eq!(err.matches("| if:").count(), 1, "interfaces other than lo visible:\n{err}");
    assert!(!err.contains("| reached"), "{err}");
    assert!(!f.path("out").exists());
    match server.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host server saw a connection from the step: {other:?}"),
    }
}

#[test]
fn writes_outside_out_are_not_collected() {
    let f = Fixture::new();
    let s = f.step("echo leak > /tmp/leak; echo leak > /etc/leak; echo leak > /leak; echo keep > /out/keep");
    run(&s).unwrap();
    assert_eq!(listing(&f.path("out")), ["keep"]);
    // /tmp is a tmpfs: nothing reaches the rootfs there either.
    assert!(!f.path("rootfs/tmp/leak").exists());
}

#[test]
fn failing_step_reports_command_code_and_tail_and_leaves_no_out() {
    let f = Fixture::new();
    let s = f.step(
        "echo partial > /out/partial; for i in $(seq 1 40); do echo line$i; done; echo oops >&2; exit 3",
    );
    let err = format!("{:#}", run(&s).unwrap_err());
    assert!(err.contains("step \"test-step\" failed: exit code 3"), "{err}");
    assert!(err.contains("exit 3"), "command not shown: {err}");
    assert!(err.contains("| oops"), "stderr not in the tail: {err}");
    assert!(err.contains("| line40"), "{err}");
    assert!(!err.contains("| line10\n"), "tail is not bounded: {err}");
    assert!(!f.path("out").exists(), "a failed step left its /out behind");
    // The full output is in the log.
    let log = fs::read_to_string(f.path("step.log")).unwrap();
    assert!(log.contains("line1\n") && log.contains("oops\n"));
}

#[test]
fn unset_variable_fails_the_step() {
    // The script runs with `sh -eu`.
    let f = Fixture::new();
    let err = run(&f.step("echo $UNDEFINED_VARIABLE > /out/x")).unwrap_err().to_string();
    assert!(err.contains("exit code"), "{err}");
}

#[test]
fn sources_are_read_only() {
    let f = Fixture::new();
    let src = f.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("input.txt"), "from source\n").unwrap();
    let mut s = f.step(
        "cat /src/app/input.txt > /out/copy; \
         if echo x > /src/app/new 2>/dev/null; then exit 9; fi; \
         if rm /src/app/input.txt 2>/dev/null; then exit 10; fi; echo ro-ok > /out/ro",
    );
    s.mounts.push(Bind { host: src.clone(), guest: "/src/app".into(), readonly: true });
    s.workdir = "/src/app".into();
    run(&s).unwrap();
    assert_eq!(fs::read_to_string(f.path("out/copy")).unwrap(), "from source\n");
    assert_eq!(fs::read_to_string(f.path("out/ro")).unwrap(), "ro-ok\n");
    assert_eq!(listing(&src), ["input.txt"]);
}

#[test]
fn timeout_kills_the_step() {
    let f = Fixture::new();
    let mut s = f.step("echo started; sleep 60");
    s.timeout = Duration::from_secs(2);
    let t = std::time::Instant::now();
    let err = run(&s).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(30), "timeout not enforced");
    assert!(err.contains("timed out after 2 s"), "{err}");
    assert!(err.contains("| started"), "{err}");
    assert!(!f.path("out").exists());
}

#[test]
fn existing_out_dir_is_refused() {
    let f = Fixture::new();
    fs::create_dir(f.path("out")).unwrap();
    fs::write(f.path("out/old"), "x").unwrap();
    let err = run(&f.step("true")).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(listing(&f.path("out")), ["old"], "an existing directory must be left alone");
}

#[test]
fn runc_gives_the_same_sandbox() {
    let f = Fixture::new();
    let s = f.step(
        "tr '\\0' '\\n' < /proc/1/environ | sort > /out/env; hostname > /out/host; umask > /out/umask; \
         if echo | nc -w 2 127.0.0.1 1 2>/dev/null; then echo net > /out/net; fi",
    );
    Sandbox::new(Runtime::Runc).run(&s).unwrap();
    assert_eq!(
        fs::read_to_string(f.path("out/env")).unwrap(),
        "HOME=/root\nLANG=C\nLC_ALL=C\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         SOURCE_DATE_EPOCH=1700000000\nTZ=UTC\n"
    );
    assert_eq!(fs::read_to_string(f.path("out/host")).unwrap(), "eifbake\n");
    assert_eq!(fs::read_to_string(f.path("out/umask")).unwrap(), "0022\n");
    assert_eq!(listing(&f.path("out")), ["env", "host", "umask"]);
}

#[test]
fn root_in_a_step_can_chown_and_mknod_but_not_mount() {
    let f = Fixture::new();
    let s = f.step(
        "echo x > /out/f; chown 1000:1000 /out/f; chmod 0444 /out/f; echo y >> /out/f; \
         mknod /tmp/null c 1 3; test -c /tmp/null; \
         if mount -t tmpfs tmpfs /mnt 2>/dev/null; then echo mounted > /out/mounted; fi",
    );
    run(&s).unwrap();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(f.path("out/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert_eq!(fs::read_to_string(f.path("out/f")).unwrap(), "x\ny\n");
    assert!(!f.path("out/mounted").exists(), "a step could mount (CAP_SYS_ADMIN)");
}

#[test]
fn absolute_symlinks_resolve_inside_the_rootfs() {
    // Real images link /bin/sh -> /bin/busybox; the link means the rootfs's busybox.
    let f = Fixture::new();
    let sh = f.path("rootfs/bin/sh");
    fs::remove_file(&sh).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", &sh).unwrap();
    run(&f.step("readlink /bin/sh > /out/link")).unwrap();
    assert_eq!(fs::read_to_string(f.path("out/link")).unwrap(), "/bin/busybox\n");

    let g = Fixture::new();
    fs::remove_file(g.path("rootfs/bin/sh")).unwrap();
    let err = run(&g.step("true")).unwrap_err().to_string();
    assert!(err.contains("has no /bin/sh"), "{err}");
    assert!(!g.path("out").exists());
}
