//! The sandbox runs real steps with crun and runc (as root, as CI does) in a
//! busybox root filesystem, and checks what a step can and cannot see and
//! do: each escape is tried for real, under both runtimes, and a step's
//! processes must not outlive eifbake.

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
            network: None,
            user: None,
            keep_out: false,
            lower: None,
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
    for rt in RUNTIMES {
        let f = Fixture::new();
        let marker = format!("eifbake-timeout-check-{}-{rt}", std::process::id());
        let mut s = f.step(&format!("echo started; mkdir /tmp/{marker}; ln -s /bin/busybox /tmp/{marker}/sleep; /tmp/{marker}/sleep 60"));
        s.timeout = Duration::from_secs(2);
        let t = std::time::Instant::now();
        let err = Sandbox::new(rt).run(&s).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(30), "{rt}: timeout not enforced");
        assert!(err.contains("timed out after 2 s"), "{rt}: {err}");
        assert!(err.contains("| started"), "{rt}: {err}");
        assert!(!f.path("out").exists(), "{rt}");
        // Nothing of the step survives its timeout, and no container state is left.
        assert_eq!(processes_with(&marker, false), [], "{rt}");
        let bundle = err.split("--bundle ").nth(1).unwrap().split(' ').next().unwrap();
        assert!(!Path::new(bundle).exists(), "{rt}: bundle {bundle} left");
        let id =
            err.split("--bundle ").nth(1).unwrap().split(' ').nth(1).unwrap().split('\n').next().unwrap();
        for c in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(!c.path().join(id).exists(), "{rt}: cgroup {}/{id} left", c.path().display());
        }
    }
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

const RUNTIMES: [Runtime; 2] = [Runtime::Crun, Runtime::Runc];

/// Runs `script` (after the `attempt` helper below) under `rt`; the step must succeed.
/// `attempt NAME CMD...` records CMD's exit status, stdout and stderr in
/// /out/NAME.rc, .out and .err; an escape that works writes /out/ESCAPED.*.
fn attempts(rt: Runtime, script: &str) -> Fixture {
    let f = Fixture::new();
    let s = f.step(&format!(
        "attempt() {{ n=$1; shift; if \"$@\" >/out/$n.out 2>/out/$n.err; then echo 0 >/out/$n.rc; \
         else echo $? >/out/$n.rc; fi; }}\n{script}"
    ));
    if let Err(e) = Sandbox::new(rt).run(&s) {
        panic!("{rt}: {e:#}");
    }
    f
}

/// (exit status, stdout, stderr) of attempt `n`.
fn outcome(f: &Fixture, n: &str) -> (String, String, String) {
    let read = |ext: &str| fs::read_to_string(f.path(&format!("out/{n}.{ext}"))).unwrap();
    (read("rc").trim().to_string(), read("out"), read("err"))
}

fn escaped(f: &Fixture) -> Vec<String> {
    listing(&f.path("out")).into_iter().filter(|n| n.starts_with("ESCAPED")).collect()
}

#[test]
fn escapes_from_a_step_fail_under_crun_and_runc() {
    let eperm = "Operation not permitted";
    for rt in RUNTIMES {
        let f = attempts(
            rt,
            "mkdir -p /mnt\n\
             attempt loop sh -c 'mknod /tmp/loop b 7 0 && dd if=/tmp/loop of=/dev/null bs=512 count=1 && echo > /out/ESCAPED.loop'\n\
             attempt kvm sh -c 'mknod /tmp/kvm c 10 232 && exec 3</tmp/kvm && echo > /out/ESCAPED.kvm'\n\
             attempt devkvm sh -c 'if test -e /dev/kvm; then echo > /out/ESCAPED.devkvm_visible; exec 3</dev/kvm; echo > /out/ESCAPED.devkvm_opened; fi'\n\
             attempt mount sh -c 'mount -t tmpfs x /mnt && echo > /out/ESCAPED.mount'\n\
             attempt unshare unshare -U -r sh -c 'echo > /out/ESCAPED.unshare'\n\
             attempt unshare_net unshare -n sh -c 'echo > /out/ESCAPED.unshare_net'\n\
             attempt chroot chroot /tmp /bin/busybox true\n\
             attempt kcore sh -c 'head -c 4096 /proc/kcore | wc -c'\n\
             attempt timer_list sh -c 'head -c 4096 /proc/timer_list | wc -c'\n\
             attempt sys sh -c 'v=$(cat /sys/kernel/mm/ksm/run); echo $v > /sys/kernel/mm/ksm/run && echo > /out/ESCAPED.sys'\n\
             attempt core_pattern sh -c 'v=$(cat /proc/sys/kernel/core_pattern); echo \"$v\" > /proc/sys/kernel/core_pattern && echo > /out/ESCAPED.core_pattern'\n\
             find /dev -type b > /out/dev.block; find /dev -type c | sort > /out/dev.char",
        );
        assert_eq!(escaped(&f), Vec::<String>::new(), "{rt}: escapes worked");
        let o = |n| outcome(&f, n);
        assert_eq!(o("loop"), ("1".into(), "".into(), format!("mknod: /tmp/loop: {eperm}\n")), "{rt}");
        assert_eq!(o("kvm"), ("1".into(), "".into(), format!("mknod: /tmp/kvm: {eperm}\n")), "{rt}");
        assert_eq!(o("devkvm").0, "0", "{rt}: /dev/kvm is visible: {:?}", o("devkvm"));
        assert_eq!(
            o("mount"),
            ("1".into(), "".into(), "mount: permission denied (are you root?)\n".into()),
            "{rt}"
        );
        assert_eq!(
            o("unshare"),
            ("1".into(), "".into(), format!("unshare: unshare(0x10000000): {eperm}\n")),
            "{rt}"
        );
        assert_eq!(
            o("unshare_net"),
            ("1".into(), "".into(), format!("unshare: unshare(0x40000000): {eperm}\n")),
            "{rt}"
        );
        assert_eq!(
            o("chroot"),
            ("1".into(), "".into(), format!("chroot: can't change root directory to '/tmp': {eperm}\n")),
            "{rt}"
        );
        // Masked: /dev/null bound over them (this host's kernel may have no /proc/kcore at all).
        let kcore_err = if Path::new("/proc/kcore").exists() {
            ""
        } else {
            "head: /proc/kcore: No such file or directory\n"
        };
        assert_eq!(o("kcore"), ("0".into(), "0\n".into(), kcore_err.into()), "{rt}: /proc/kcore is readable");
        assert!(!fs::read("/proc/timer_list").unwrap().is_empty(), "the host's /proc/timer_list is empty");
        assert_eq!(
            o("timer_list"),
            ("0".into(), "0\n".into(), "".into()),
            "{rt}: /proc/timer_list is readable"
        );
        assert_eq!(
            o("sys"),
            (
                "1".into(),
                "".into(),
                "sh: can't create /sys/kernel/mm/ksm/run: Read-only file system\n".into()
            ),
            "{rt}"
        );
        assert_eq!(
            o("core_pattern"),
            (
                "1".into(),
                "".into(),
                "sh: can't create /proc/sys/kernel/core_pattern: Read-only file system\n".into()
            ),
            "{rt}"
        );
        assert_eq!(fs::read_to_string(f.path("out/dev.block")).unwrap(), "", "{rt}: block devices in /dev");
        let standard = [
            "/dev/full",
            "/dev/null",
            "/dev/ptmx",
            "/dev/pts/ptmx",
            "/dev/random",
            "/dev/tty",
            "/dev/urandom",
            "/dev/zero",
        ];
        let chars = fs::read_to_string(f.path("out/dev.char")).unwrap();
        for d in chars.lines() {
            assert!(standard.contains(&d), "{rt}: unexpected device {d} in:\n{chars}");
        }
        assert!(chars.contains("/dev/null\n") && chars.contains("/dev/urandom\n"), "{rt}: {chars}");
    }
}

#[test]
fn ordinary_build_commands_still_work_under_crun_and_runc() {
    for rt in RUNTIMES {
        let f = attempts(
            rt,
            "mkdir -p /work/src; cd /work; printf 'hello\\n' > src/a\n\
             cp -a src /out/dst; chown 1000:1000 /out/dst/a; chmod 0444 /out/dst/a\n\
             echo more >> /out/dst/a\n\
             ln -s a /out/dst/link; mkfifo /out/dst/fifo; mknod /out/dst/fifo2 p\n\
             mkdir ro; touch ro/f; chmod 0555 ro; rm -rf ro; test ! -e ro\n\
             printf '#!/bin/sh\\necho \"script ran as $(id -u)\"\\n' > build.sh; chmod +x build.sh; ./build.sh > /out/script\n\
             echo 'builder:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd; su builder -c 'id -u; id -g' > /out/dropped\n\
             tar -cf /out/t.tar -C /out dst/a\n\
             ulimit -c > /out/core; ulimit -n > /out/nofile\n\
             attempt thread sh -c 'sleep 0.1 & wait'",
        );
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let a = fs::metadata(f.path("out/dst/a")).unwrap();
        assert_eq!((a.uid(), a.gid(), a.permissions().mode() & 0o7777), (1000, 1000, 0o444), "{rt}");
        assert_eq!(fs::read_to_string(f.path("out/dst/a")).unwrap(), "hello\nmore\n", "{rt}");
        assert_eq!(fs::read_link(f.path("out/dst/link")).unwrap(), Path::new("a"), "{rt}");
        assert!(fs::symlink_metadata(f.path("out/dst/fifo")).unwrap().file_type().is_fifo(), "{rt}");
        assert!(fs::symlink_metadata(f.path("out/dst/fifo2")).unwrap().file_type().is_fifo(), "{rt}");
        assert_eq!(fs::read_to_string(f.path("out/script")).unwrap(), "script ran as 0\n", "{rt}");
        assert_eq!(fs::read_to_string(f.path("out/dropped")).unwrap(), "1000\n1000\n", "{rt}");
        assert!(fs::metadata(f.path("out/t.tar")).unwrap().len() >= 1024, "{rt}");
        assert_eq!(fs::read_to_string(f.path("out/core")).unwrap(), "0\n", "{rt}");
        assert_eq!(fs::read_to_string(f.path("out/nofile")).unwrap(), "4096\n", "{rt}");
        assert_eq!(outcome(&f, "thread").0, "0", "{rt}");
    }
}

/// Processes (pid, command line) whose command line contains `needle`, or has it as one whole argument when `whole`.
fn processes_with(needle: &str, whole: bool) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let hit =
            if whole { args.iter().any(|a| a == needle) } else { args.iter().any(|a| a.contains(needle)) };
        if hit && pid != std::process::id() {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("gave up waiting for {what}");
    false
}

/// An `eifbake build` whose step sleeps, started under `rt` and seen running.
struct SleepingBuild {
    dir: tempfile::TempDir,
    child: std::process::Child,
    rt: Runtime,
    /// In the command lines of the step's shell and of its sleep.
    marker: String,
    /// The runtime's container id (an argument of its command line).
    container_id: String,
    /// The runtime's `--root`.
    state: PathBuf,
}

impl SleepingBuild {
    /// `tag` tells apart the tests running at the same time.
    fn start(reg: &common::TestRegistry, rt: Runtime, tag: &str) -> SleepingBuild {
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("eifbake-orphan-check-{}-{tag}-{rt}", std::process::id());
        let script = format!(
            "mkdir -p /tmp/{marker}; /bin/busybox ln -s /bin/busybox /tmp/{marker}/sleep; /tmp/{marker}/sleep 1000"
        );
        let recipe_dir = dir.path().join("recipes/k");
        fs::create_dir_all(recipe_dir.join("app")).unwrap();
        fs::write(recipe_dir.join("app/x"), "x\n").unwrap();
        let text =
            common::busybox_step_recipe("k", "0.1.0", &reg.image("fx/busybox:1"), "path = \"app\"", &script);
        let recipe = recipe_dir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        let store = dir.path().join("store");
        let (s, r) = (store.to_str().unwrap(), recipe.to_str().unwrap());
        let (code, out, err) = common::eifbake(&["--store", s, "lock", r]);
        assert_eq!(code, 0, "lock: {out}{err}");

        let logf = fs::File::create(dir.path().join("build.log")).unwrap();
        let mut child = common::bin::eifbake_cmd()
            .args(["--store", s, "build", r, "--runtime", rt.program(), "--out"])
            .arg(dir.path().join("out"))
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let started = wait_for("the step", Duration::from_secs(120), || {
            processes_with(&format!("/tmp/{marker}/sleep"), true).len() == 1
                || child.try_wait().unwrap().is_some()
        });
        let running = processes_with(&marker, false);
        let log = fs::read_to_string(dir.path().join("build.log")).unwrap();
        assert!(started && running.len() >= 2, "{rt}: the step did not start: {running:?}\n{log}");
        let prefix = format!("eifbake-{}-", child.id());
        let runtime = processes_with(&prefix, false);
        assert!(!runtime.is_empty(), "{rt}: the runtime is not running");
        // `RUNTIME --root BUNDLE/state ... run --bundle BUNDLE ID`
        let args: Vec<&str> = runtime[0].1.split(' ').collect();
        let state = args.iter().skip_while(|a| **a != "--root").nth(1).unwrap().into();
        let container_id = args.iter().find(|a| a.starts_with(&prefix)).unwrap().to_string();
        SleepingBuild { dir, child, rt, marker, container_id, state }
    }

    /// Waits up to 5 s for every process of the step and the runtime to be gone.
    fn assert_step_gone(&self) {
        let gone = wait_for("the step to die", Duration::from_secs(5), || {
            processes_with(&self.marker, false).is_empty()
                && processes_with(&self.container_id, true).is_empty()
        });
        assert!(
            gone,
            "{}: processes outlived eifbake: {:?} {:?}",
            self.rt,
            processes_with(&self.marker, false),
            processes_with(&self.container_id, true)
        );
    }

    /// The container's cgroup directories (runc makes them; crun runs without cgroups).
    fn cgroups(&self) -> Vec<PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|c| c.path().join(&self.container_id))
            .filter(|p| p.exists())
            .collect()
    }
}

#[test]
fn a_step_dies_with_eifbake_under_crun_and_runc() {
    let reg = common::TestRegistry::start();
    let _fixtures = common::push_fixtures(&reg);
    for rt in RUNTIMES {
        let mut b = SleepingBuild::start(&reg, rt, "kill");
        b.child.kill().unwrap();
        b.child.wait().unwrap();
        b.assert_step_gone();
        // What kill -9 leaves: the bundle directory and, under runc, the container's empty cgroups.
        let _ = std::process::Command::new(rt.program())
            .arg("--root")
            .arg(&b.state)
            .args(["delete", "--force", &b.container_id])
            .status();
        let _ = fs::remove_dir_all(b.state.parent().unwrap());
    }
}

#[test]
fn an_interrupted_step_is_stopped_and_its_state_deleted() {
    let reg = common::TestRegistry::start();
    let _fixtures = common::push_fixtures(&reg);
    for (rt, sig) in [(Runtime::Crun, libc::SIGINT), (Runtime::Runc, libc::SIGTERM)] {
        let mut b = SleepingBuild::start(&reg, rt, "signal");
        if rt == Runtime::Runc {
            assert!(!b.cgroups().is_empty(), "runc made no cgroup for {}", b.container_id);
        }
        // Only eifbake gets the signal (a terminal's Ctrl-C reaches the runtime too, which is easier).
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(b.child.id() as i32, sig) }, 0);
        let exited =
            wait_for("eifbake to exit", Duration::from_secs(10), || b.child.try_wait().unwrap().is_some());
        let log = fs::read_to_string(b.dir.path().join("build.log")).unwrap();
        assert!(exited, "{rt}: eifbake kept running after signal {sig}:\n{log}");
        assert_eq!(b.child.wait().unwrap().code(), Some(2), "{rt}: {log}");
        assert!(log.contains(&format!("step \"make\" failed: interrupted by signal {sig}")), "{rt}: {log}");
        b.assert_step_gone();
        assert!(!b.state.exists(), "{rt}: the runtime state {} is left", b.state.display());
        assert_eq!(b.cgroups(), Vec::<PathBuf>::new(), "{rt}: cgroups left");
    }
}

#[test]
fn device_nodes_an_image_carries_do_not_reach_a_step() {
    // Run as root, the layer extractor could create them; under crun no
    // device cgroup would then stop the step from opening /loop.
    let reg = common::TestRegistry::start();
    let layout = tempfile::tempdir().unwrap();
    let store = eifbake::oci::store::Store::open(layout.path()).unwrap();
    let devices = common::layer_tar(&[
        common::Entry::Device("loop", tar::EntryType::Block, 7, 0),
        common::Entry::Device("kmsg", tar::EntryType::Char, 1, 11),
    ]);
    let image = common::write_image(&store, "amd64", &[common::busybox_layer(), devices]);
    common::push(&store, "devs", image, &reg.image("fx/devs:1"), None);
    for rt in RUNTIMES {
        let dir = tempfile::tempdir().unwrap();
        let recipe_dir = dir.path().join("recipes/d");
        fs::create_dir_all(recipe_dir.join("app")).unwrap();
        fs::write(recipe_dir.join("app/x"), "x\n").unwrap();
        let script = "for d in loop kmsg; do \
                        if /bin/busybox dd if=/$d of=/dev/null bs=1 count=1; then echo \"opened /$d\"; exit 3; fi; \
                        if test -e /$d; then echo \"/$d exists\"; exit 4; fi; \
                      done; echo ok > /out/r";
        let text =
            common::busybox_step_recipe("d", "0.1.0", &reg.image("fx/devs:1"), "path = \"app\"", script);
        let recipe = recipe_dir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        let s = dir.path().join("store");
        let (s, r) = (s.to_str().unwrap(), recipe.to_str().unwrap());
        let (code, out, err) = common::eifbake(&["--store", s, "lock", r]);
        assert_eq!(code, 0, "lock: {out}{err}");
        let out_dir = dir.path().join("out");
        let (code, out, err) = common::eifbake(&[
            "--store",
            s,
            "build",
            r,
            "--runtime",
            rt.program(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{rt}: {out}{err}");
    }
}

/// A loopback HTTP server on the host answering every request with `body`;
/// returns its port. It serves until the test process ends.
fn http_server(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

#[test]
fn only_a_fetch_step_reaches_the_network_and_the_host_loopback_only_when_listed() {
    for rt in [Runtime::Crun, Runtime::Runc] {
        fetch_step_network(rt);
    }
}

fn fetch_step_network(rt: Runtime) {
    let run = |s: &StepRun| Sandbox::new(rt).run(s);
    let port = http_server("fetched\n");
    let fetch = format!("wget -q -O /out/got http://127.0.0.1:{port}/file");
    // An ordinary step: no route anywhere, the host's server unreachable.
    let f = Fixture::new();
    let err = run(&f.step(&fetch)).unwrap_err().to_string();
    assert!(err.contains("failed: exit code"), "{err}");
    // A fetch step with the port listed by the user reaches it on its own 127.0.0.1.
    let f = Fixture::new();
    let mut s = f.step(&format!(
        "{fetch}; cat /etc/resolv.conf > /out/resolv; if echo x > /etc/resolv.conf; then echo rw > /out/rw; fi"
    ));
    s.network = Some(eifbake::sandbox::NetworkAccess::with_ports(&port.to_string()).unwrap());
    run(&s).unwrap();
    assert_eq!(fs::read_to_string(f.path("out/got")).unwrap(), "fetched\n");
    // Names resolve through pasta's DNS forwarder, named in a read-only resolv.conf.
    let resolv = format!("nameserver {}\n", eifbake::sandbox::network::DNS_ADDRESS);
    assert_eq!(fs::read_to_string(f.path("out/resolv")).unwrap(), resolv);
    assert!(!f.path("out/rw").exists(), "the step could write its /etc/resolv.conf");
    // It has a route out (a network), but by default no way to the host's loopback.
    let f = Fixture::new();
    let mut s = f.step(&format!(
        "for i in $(tail -n +3 /proc/net/dev | cut -d: -f1); do echo if:$i; done; \
         grep -q '^[a-z0-9]*\t00000000' /proc/net/route && echo default-route; \
         if {fetch}; then echo reached; fi; exit 1"
    ));
    s.network = Some(eifbake::sandbox::NetworkAccess::default());
    let err = run(&s).unwrap_err().to_string();
    assert!(err.contains("| default-route"), "{err}");
    assert!(err.matches("| if:").count() >= 2, "only lo:\n{err}");
    assert!(!err.contains("| reached"), "{err}");
}
