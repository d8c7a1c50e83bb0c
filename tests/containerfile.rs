//! Containerfiles built by eifbake (lowered to root steps of a recipe) and,
//! as an independent oracle, by `buildah bud` (daemonless, vfs storage in a
//! private directory) from the same fixture images in the loopback
//! registry: the final stage's trees must agree. Also the refusals (an
//! unsupported instruction, an unresolvable `FROM`, an `ADD` whose checksum
//! does not match), each naming the Containerfile and line, exit 2.
//! Runs as root (CI does): steps, buildah and cpio extraction need it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eifbake, TestRegistry};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One entry of a tree: kind and content (file sha256 / symlink target), mode, uid, gid.
type Listing = BTreeMap<String, (String, u32, u32, u32)>;

fn listing(root: &Path) -> Listing {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false).sort_by_file_name() {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let what = if md.file_type().is_symlink() {
            format!("symlink {}", fs::read_link(e.path()).unwrap().display())
        } else if md.is_dir() {
            "dir".to_string()
        } else if md.is_file() {
            format!("file {}", eifbake::digest::Digest::of(&fs::read(e.path()).unwrap()))
        } else {
            format!("other {:o}", md.mode())
        };
        let mode = if md.file_type().is_symlink() { 0o777 } else { md.permissions().mode() & 0o7777 };
        out.insert(rel, (what, mode, md.uid(), md.gid()));
    }
    out
}

/// eifbake's documented normalisation of the enclave's tree: owners 0,
/// directories and files with an execute bit 0755, other files 0644.
fn normalised(l: &Listing) -> Listing {
    l.iter()
        .map(|(k, (what, mode, _, _))| {
            let m = if what.starts_with("symlink") {
                0o777
            } else if what == "dir" || mode & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            (k.clone(), (what.clone(), m, 0, 0))
        })
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A project `root/recipes/NAME/` with `recipe.toml` naming `Containerfile`
/// (`cf`), its context files (`files`: path, content, mode), kernel and
/// init taken from the busybox fixture.
fn project(reg: &TestRegistry, root: &Path, name: &str, cf: &str, files: &[(&str, &str, u32)]) -> PathBuf {
    let dir = root.join("recipes").join(name);
    fs::create_dir_all(&dir).unwrap();
    for (p, content, mode) in files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    fs::write(dir.join("Containerfile"), cf).unwrap();
    let recipe = format!(
        r#"name = "{name}"
source_date_epoch = 1700000000
containerfile = "Containerfile"
build_args = {{ BASE = "{}", NAME = "from-build-arg" }}

[images]
bb = "{}"

[enclave]
kernel = {{ image = "bb", path = "/bin/busybox" }}
init = {{ image = "bb", path = "/bin/busybox" }}
cmdline = "console=ttyS0"
"#,
        reg.image("fx/busybox:1"),
        reg.image("fx/busybox:1")
    );
    fs::write(dir.join("recipe.toml"), recipe).unwrap();
    dir
}

/// `eifbake lock` then `build` of `dir/Containerfile` (named directly);
/// returns the output directory.
fn eifbake_build(root: &Path, dir: &Path) -> PathBuf {
    let (store, out) = (root.join("store"), root.join("out"));
    let cf = dir.join("Containerfile");
    for args in [vec!["lock", s(&cf)], vec!["build", s(&cf), "--out", s(&out)]] {
        let mut a = vec!["--store", s(&store)];
        a.extend(args);
        let (code, o, e) = eifbake(&a);
        assert_eq!(code, 0, "eifbake {a:?}: {o}{e}");
    }
    out
}

/// The enclave's root filesystem of `out/NAME.eif`, extracted with GNU cpio.
fn eif_root(root: &Path, out: &Path, name: &str) -> PathBuf {
    let x = root.join("extract");
    let eif = out.join(format!("{name}.eif"));
    let (code, o, e) = eifbake(&["describe", s(&eif), "--extract", s(&x)]);
    assert_eq!(code, 0, "describe: {o}{e}");
    let tree = root.join("eif-root");
    fs::create_dir_all(&tree).unwrap();
    let cpio = fs::File::open(x.join("ramdisk0")).unwrap();
    let o = Command::new("cpio")
        .args(["-i", "-d", "--no-absolute-filenames", "--quiet"])
        .current_dir(&tree)
        .stdin(cpio)
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio: {}", String::from_utf8_lossy(&o.stderr));
    tree
}

/// `buildah bud` of `dir/Containerfile` (vfs storage under `root`, TLS off
/// for the loopback registry, `--network=none` for every RUN: this buildah
/// (1.28) takes neither `RUN --network` nor `ADD --checksum`, so both are
/// removed from the copy it reads; eifbake checks the checksums);
/// returns the final stage's root, unpacked by umoci with owners and modes.
fn buildah_build(reg: &TestRegistry, root: &Path, dir: &Path) -> PathBuf {
    let b = root.join("buildah");
    let cf = fs::read_to_string(dir.join("Containerfile")).unwrap().replace("--network=none ", "");
    let cf: String = cf
        .lines()
        .map(|l| l.split(' ').filter(|w| !w.starts_with("--checksum=")).collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("Containerfile"), cf).unwrap();
    let storage = [
        "--storage-driver=vfs".to_string(),
        format!("--root={}", b.join("root").display()),
        format!("--runroot={}", b.join("runroot").display()),
    ];
    let env =
        [("BUILDAH_ISOLATION", "chroot"), ("TMPDIR", s(root)), ("CONTAINERS_REGISTRIES_CONF", "/dev/null")];
    run(Command::new("buildah")
        .args(&storage)
        .args(["bud", "--tls-verify=false", "--network=none", "--layers=false", "--timestamp=0"])
        .args(["--build-arg", &format!("BASE={}", reg.image("fx/busybox:1"))])
        .args(["--build-arg", "NAME=from-build-arg"])
        .args(["-f", s(&b.join("Containerfile")), "-t", "localhost/oracle:1", s(dir)])
        .envs(env));
    let layout = b.join("layout");
    run(Command::new("buildah")
        .args(&storage)
        .args(["push", "localhost/oracle:1", &format!("oci:{}:x", layout.display())])
        .envs(env));
    let bundle = b.join("bundle");
    run(Command::new("umoci").args(["unpack", "--image", &format!("{}:x", layout.display()), s(&bundle)]));
    bundle.join("rootfs")
}

/// What eifbake adds to every enclave root (the measured inputs, init,
/// cmd, env, the runtime directories): left out of the comparison.
fn without_eifbake_additions(mut l: Listing, other: &Listing) -> Listing {
    for k in ["init", "cmd", "env", "etc/eifbake", "etc/eifbake/inputs.json"] {
        l.remove(k);
    }
    for d in ["dev", "proc", "sys", "tmp", "run", "etc"] {
        if !other.contains_key(d)
            && l.get(d).is_some_and(|(w, ..)| w == "dir")
            && !l.keys().any(|k| k.starts_with(&format!("{d}/")))
        {
            l.remove(d);
        }
    }
    l
}

/// The empty files buildah's RUN leaves where it mounted the container's
/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (BuildKit leaves
/// none): not part of what the Containerfile says.
fn buildah_without_mount_points(mut l: Listing) -> Listing {
    const EMPTY: &str = "file sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        if l.get(f).is_some_and(|(w, ..)| w == EMPTY) {
            l.remove(f);
        }
    }
    l
}

/// The empty directories buildah's RUN leaves as mount points (`/dev`,
/// `/proc`, `/sys`, `/run`), which `COPY --from=build / /` then carries:
/// eifbake's steps leave none (the enclave gets its own).
fn buildah_without_run_dirs(mut l: Listing) -> Listing {
    for d in ["dev", "proc", "sys", "run"] {
        if l.get(d).is_some_and(|(w, ..)| w == "dir") && !l.keys().any(|k| k.starts_with(&format!("{d}/"))) {
            l.remove(d);
        }
    }
    l
}

fn diff(a: &Listing, b: &Listing) -> String {
    let mut out = String::new();
    for k in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        if a.get(k) != b.get(k) {
            out.push_str(&format!("{k}: eifbake {:?} buildah {:?}\n", a.get(k), b.get(k)));
        }
    }
    out
}

/// Every supported instruction, in two stages; the final stage's tree as
/// eifbake puts it into the EIF equals buildah's, normalised the way eifbake
/// documents (owners 0, modes 0755/0644), and eifbake's own step output
/// (kept in the step cache) equals buildah's exactly: names, contents,
/// modes, symlink targets, owners.
#[test]
fn every_instruction_matches_buildah() {
    if !common::root_or_skip("building a Containerfile with steps and buildah") {
        return;
    }
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cf = r#"# syntax=docker/dockerfile:1
# escape=\
ARG BASE
FROM ${BASE} AS build
ENV SOURCE_DATE_EPOCH=1 GREETING="hello world"
ARG NAME=default
WORKDIR /work
COPY app/ ./
COPY --chmod=0700 tool.sh /usr/local/bin/tool
ADD data.txt /data/
RUN --network=none echo "$GREETING $NAME $SOURCE_DATE_EPOCH" > /work/greeting \
    # a comment inside the continuation
    && /bin/busybox ln -s greeting /work/link && /bin/busybox chmod 0640 /work/greeting \
    && /bin/busybox mkdir -m 0777 /work/shared
RUN ["/bin/busybox", "touch", "/work/exec-form"]
RUN --network=none mkdir -p /out/sub && echo kept > /out/sub/f
RUN --network=none cat /out/sub/f > /work/from-out
USER 1000:1000
RUN --network=none echo "written as $(/bin/busybox id -u):$(/bin/busybox id -g)" > /work/shared/by-user
USER 0

FROM scratch
COPY --from=build / /
COPY --from=build /work/greeting /work/link /srv/
WORKDIR /srv/empty
ARG NAME
LABEL org.opencontainers.image.title="containerfile test" version=$NAME
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "cat /srv/greeting"]
"#;
    let files = [
        ("app/main.txt", "main\n", 0o644),
        ("app/sub/run.sh", "#!/bin/sh\necho run\n", 0o755),
        ("tool.sh", "#!/bin/sh\necho tool\n", 0o644),
        ("data.txt", "data\n", 0o644),
    ];
    let dir = project(&reg, root, "every", cf, &files);
    let out = eifbake_build(root, &dir);
    let ours = listing(&eif_root(root, &out, "every"));
    let theirs = buildah_without_mount_points(listing(&buildah_build(&reg, root, &dir)));
    let ours = without_eifbake_additions(ours, &theirs);
    let d = diff(&ours, &normalised(&theirs));
    assert!(d.is_empty(), "the EIF's root differs from buildah's (normalised):\n{d}");
    for k in ["srv/empty", "work/shared/by-user", "out/sub/f", "work/from-out"] {
        assert!(theirs.contains_key(k), "{k} in {theirs:?}");
    }
    // Exactly, before the enclave's normalisation: the final step's output in the step cache.
    let steps = root.join("store/eifbake/steps");
    let exact: Vec<Listing> = fs::read_dir(&steps)
        .unwrap()
        .map(|e| listing(&e.unwrap().path().join("out")))
        .filter(|l| l.contains_key("srv/empty"))
        .collect();
    assert_eq!(exact.len(), 1, "one cached output is the final stage's");
    let d = diff(&exact[0], &buildah_without_run_dirs(theirs.clone()));
    assert!(d.is_empty(), "the final stage's tree differs from buildah's:\n{d}");
    // The command, env and labels.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("every.manifest.json")).unwrap()).unwrap();
    let e = &manifest["inputs"]["enclave"];
    assert_eq!(e["command"], serde_json::json!(["/bin/sh", "-c", "cat /srv/greeting"]));
    assert_eq!(e["labels"]["version"], "from-build-arg");
    assert_eq!(e["labels"]["org.opencontainers.image.title"], "containerfile test");
    // The same as buildah's image config: ENTRYPOINT + CMD, and the labels
    // (but the one buildah adds of itself).
    let layout = format!("oci:{}:x", root.join("buildah/layout").display());
    let cfg: serde_json::Value =
        serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--config", &layout]))).unwrap();
    let c = &cfg["config"];
    let mut argv = c["Entrypoint"].as_array().cloned().unwrap_or_default();
    argv.extend(c["Cmd"].as_array().cloned().unwrap_or_default());
    assert_eq!(e["command"], serde_json::Value::Array(argv), "buildah's Entrypoint + Cmd");
    let mut labels = c["Labels"].as_object().cloned().unwrap_or_default();
    labels.retain(|k, _| !k.starts_with("io.buildah."));
    assert_eq!(e["labels"], serde_json::Value::Object(labels), "buildah's labels");
}

/// `eifbake lock` of `dir/Containerfile`: (exit code, stderr).
fn lock(root: &Path, dir: &Path) -> (i32, String) {
    let (store, cf) = (root.join("store"), dir.join("Containerfile"));
    let (code, o, e) = eifbake(&["--store", s(&store), "lock", s(&cf)]);
    (code, format!("{o}{e}"))
}

/// An unsupported instruction, a `FROM` that `lock` cannot resolve and an
/// `ADD` whose download does not match its checksum are each refused with
/// exit 2, naming the Containerfile and the line.
#[test]
fn refusals_name_the_containerfile_and_line() {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let http = common::http::HttpServer::start();
    let url = http.serve("/data.bin", b"the real bytes\n");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cases = [
        (
            "unsupported",
            "ARG BASE\nFROM ${BASE}\nEXPOSE 8080\nCMD [\"/bin/sh\"]\n".to_string(),
            ":3: EXPOSE: not supported",
        ),
        (
            "unresolvable",
            format!(
                "ARG BASE\nFROM ${{BASE}} AS a\n\nFROM {}\nCMD [\"/bin/sh\"]\n",
                reg.image("fx/no-such-image:1")
            ),
            ":4: locking image",
        ),
        (
            "checksum",
            format!(
                "ARG BASE\nFROM ${{BASE}}\nADD --checksum=sha256:{} {url} /data.bin\nCMD [\"/bin/sh\"]\n",
                "0".repeat(64)
            ),
            ":3: locking source",
        ),
    ];
    for (name, cf, want) in cases {
        let dir = project(&reg, root, name, &cf, &[]);
        let (code, err) = lock(root, &dir);
        let at = format!("{}{want}", dir.join("Containerfile").display());
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(&at), "{name}: expected {at:?} in:\n{err}");
    }
}

/// `ADD --checksum URL` with the right checksum: pinned in the lock as a
/// url source, the file in the tree as buildah puts it (mode 0600).
#[test]
fn add_url_matches_buildah() {
    if !common::root_or_skip("building a Containerfile with steps and buildah") {
        return;
    }
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let http = common::http::HttpServer::start();
    let body = b"downloaded\n";
    let url = http.serve("/dl/data.bin", body);
    let sum = eifbake::digest::Digest::of(body);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cf = format!(
        "ARG BASE\nFROM ${{BASE}}\nADD --checksum={sum} {url} /opt/\nADD --checksum={sum} --chmod=0755 {url} /opt/exe\nCMD [\"/bin/sh\"]\n"
    );
    let dir = project(&reg, root, "addurl", &cf, &[]);
    let out = eifbake_build(root, &dir);
    let lock = fs::read_to_string(root.join("lockfiles/addurl.lock")).unwrap();
    assert!(lock.contains("[sources.cf-line3]") && lock.contains(&url), "{lock}");
    let ours = listing(&eif_root(root, &out, "addurl"));
    let theirs = buildah_without_mount_points(listing(&buildah_build(&reg, root, &dir)));
    let ours = without_eifbake_additions(ours, &theirs);
    let d = diff(&ours, &normalised(&theirs));
    assert!(d.is_empty(), "the EIF's root differs from buildah's (normalised):\n{d}");
    assert_eq!(theirs["opt/data.bin"].1, 0o600, "buildah: a downloaded file is 0600");
    let exact: Vec<Listing> = fs::read_dir(root.join("store/eifbake/steps"))
        .unwrap()
        .map(|e| listing(&e.unwrap().path().join("out")))
        .filter(|l| l.contains_key("opt/exe"))
        .collect();
    let d = diff(&exact[0], &buildah_without_run_dirs(theirs));
    assert!(d.is_empty(), "the final stage's tree differs from buildah's:\n{d}");
}

/// Copy `examples/stagex-containerfile` to `to` (its registry address made
/// the test registry's); returns the copy.
fn copy_example(to: &Path, addr: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stagex-containerfile");
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-r").arg(&example).arg(to));
    let recipe = to.join("recipe.toml");
    let text = fs::read_to_string(&recipe).unwrap().replace("127.0.0.1:5055", addr);
    fs::write(&recipe, text).unwrap();
    to.to_path_buf()
}

/// `examples/stagex-containerfile` (multi-stage, StageX style, against the
/// demo's fixture images): locked with its base pinned by `@sha256`, built
/// in two directories with different umask, time zone, locale, store and no
/// step cache, the same EIF bytes; `verify` rebuilds it from the manifest
/// (and the build context) and says GOOD.
#[test]
fn stagex_example_builds_twice_identically_and_verifies() {
    if !common::root_or_skip("building the Containerfile example") {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    common::push_demo_images(&reg, work, ["1.35", "6.1", "1"]);
    let a = copy_example(&work.join("a/stagex-containerfile"), &reg.addr);
    let store_a = work.join("store-a");
    let cf_a = a.join("Containerfile");
    let (code, o, e) = eifbake(&["--store", s(&store_a), "lock", s(&cf_a)]);
    assert_eq!(code, 0, "lock: {o}{e}");
    // StageX style: the base by digest, the one the tag resolved to.
    let lock = eifbake::lock::Lock::load(&a.join("lockfiles/stagex-containerfile.lock")).unwrap();
    let tag = format!("{}/eifbake-demo/busybox:1.35", reg.addr);
    let pinned = lock.images.values().find(|i| i.reference == tag).expect("the FROM image in the lock");
    let by_digest = format!("{tag}@{}", pinned.manifest);
    let recipe = a.join("recipe.toml");
    let text =
        fs::read_to_string(&recipe).unwrap().replace(&format!("\"{tag}\""), &format!("\"{by_digest}\""));
    fs::write(&recipe, text).unwrap();
    let (code, o, e) = eifbake(&["--store", s(&store_a), "lock", s(&a)]);
    assert_eq!(code, 0, "lock by digest: {o}{e}");
    let lock = fs::read_to_string(a.join("lockfiles/stagex-containerfile.lock")).unwrap();
    assert!(lock.contains(&by_digest), "{lock}");
    let out_a = work.join("out-a");
    let (code, o, e) = eifbake(&["--store", s(&store_a), "build", s(&cf_a), "--out", s(&out_a)]);
    assert_eq!(code, 0, "build A: {o}{e}");

    // B: another directory, umask, time zone, locale, store, and no cache.
    let b = work.join("b/elsewhere/stagex-containerfile");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let out_b = work.join("out-b");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077 && exec \"$@\"", "sh"]).arg(common::bin::eifbake_cmd().get_program());
    common::bin::clean_env(&mut cmd)
        .args(["--store", s(&work.join("store-b")), "build", s(&b.join("Containerfile")), "--no-cache"])
        .args(["--out", s(&out_b)])
        .envs([("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")]);
    run(&mut cmd);
    for ext in ["eif", "pcrs", "manifest.json"] {
        let f = format!("stagex-containerfile.{ext}");
        assert!(fs::read(out_a.join(&f)).unwrap() == fs::read(out_b.join(&f)).unwrap(), "{f} differs");
    }
    // The enclave: the program and busybox, the command from ENTRYPOINT.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out_a.join("stagex-containerfile.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["inputs"]["enclave"]["command"], serde_json::json!(["/usr/bin/hello"]));
    let tree = listing(&eif_root(work, &out_a, "stagex-containerfile"));
    assert_eq!(tree["usr/bin/hello"].1, 0o755);
    assert!(tree.contains_key("bin/busybox") && tree.contains_key("etc/motd"), "{tree:?}");

    // verify: from the manifest alone and the build context.
    let m = out_a.join("stagex-containerfile.manifest.json");
    let ctx = format!("context={}", a.display());
    let (code, o, e) = eifbake(&["verify", s(&m), "--source", &ctx]);
    assert_eq!(code, 0, "verify: {o}{e}");
    assert!(o.contains("GOOD"), "{o}");
}

/// A Containerfile is untrusted input: what its steps leave in a root
/// (symlinks to host paths) never leads a later copy or step out of the
/// build. A `COPY` through a symlink lands inside the root, a `COPY
/// --from` of one reads the stage's own file, and a root whose `/out` is a
/// symlink is refused before the runtime could bind the host's directory.
#[test]
fn symlinks_a_step_leaves_never_lead_out_of_the_root() {
    if !common::root_or_skip("building a Containerfile with steps") {
        return;
    }
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The host directory the stage's symlinks name, outside /tmp: a step's
    // /tmp is a fresh tmpfs, so a twin the stage made there would be gone
    // and the copies below would fail for that reason instead.
    let host = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let marker = host.path().join("host-dir");
    fs::create_dir_all(&marker).unwrap();
    fs::write(marker.join("secret"), "host secret\n").unwrap();
    let m = marker.display();
    let cf = format!(
        "ARG BASE\nFROM ${{BASE}} AS evil\n\
         RUN --network=none /bin/busybox ln -s {m} /into && /bin/busybox ln -s {m}/secret /leak \
         && /bin/busybox mkdir -p {m} && echo inside > {m}/secret\n\
         COPY data.txt /into/\n\
         FROM ${{BASE}}\nCOPY --from=evil /leak /leaked\nCOPY --from=evil {m}/ /copied/\nCMD [\"/bin/sh\"]\n"
    );
    let dir = project(&reg, root, "evil", &cf, &[("data.txt", "data\n", 0o644)]);
    let out = eifbake_build(root, &dir);
    assert_eq!(fs::read_dir(&marker).unwrap().count(), 1, "nothing written into the host directory");
    assert_eq!(fs::read_to_string(marker.join("secret")).unwrap(), "host secret\n");
    let tree = eif_root(root, &out, "evil");
    assert_eq!(fs::read_to_string(tree.join("leaked")).unwrap(), "inside\n", "the stage's own file");
    assert_eq!(fs::read_to_string(tree.join("copied/data.txt")).unwrap(), "data\n");
    assert_eq!(fs::read_to_string(tree.join("copied/secret")).unwrap(), "inside\n");

    // A root whose /out is a symlink (copied from a stage that made one).
    let cf = "ARG BASE\nFROM ${BASE} AS evil\nRUN --network=none /bin/busybox mkdir /x && /bin/busybox ln -s /etc /x/out\n\
              FROM ${BASE}\nCOPY --from=evil /x/ /\nRUN --network=none echo x > /out/passwd\nCMD [\"/bin/sh\"]\n";
    let dir = project(&reg, root, "evilout", cf, &[]);
    let (store, c) = (root.join("store"), dir.join("Containerfile"));
    let (code, o, e) = eifbake(&["--store", s(&store), "lock", s(&c)]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = eifbake(&["--store", s(&store), "build", s(&c), "--out", s(&root.join("out2"))]);
    assert_eq!(code, 2, "{o}{e}");
    assert!(e.contains("/out in its root is not a directory"), "{e}");
}

/// `eifbake check` takes a Containerfile like a recipe: it builds the
/// project under varied conditions and finds the builds identical.
#[test]
fn check_builds_a_containerfile_under_variations() {
    if !common::root_or_skip("building a Containerfile with steps") {
        return;
    }
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cf = "ARG BASE\nFROM ${BASE}\nWORKDIR /app\nCOPY app/ .\n\
              RUN --network=none /bin/busybox stat -c '%n %Y' /app /app/a /app/b > /times\n\
              CMD [\"/bin/sh\"]\n";
    let dir = project(&reg, root, "checked", cf, &[("app/a", "a\n", 0o644), ("app/b", "b\n", 0o755)]);
    let (store, c) = (root.join("store"), dir.join("Containerfile"));
    let (code, o, e) = eifbake(&["--store", s(&store), "lock", s(&c)]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = eifbake(&["--store", s(&store), "check", s(&c), "--vary", "path,umask,tz,dirorder"]);
    assert_eq!(code, 0, "check: {o}{e}");
    // What a step sees of its root's times is SOURCE_DATE_EPOCH, not when the files were copied.
    let out = root.join("out");
    let (code, o, e) = eifbake(&["--store", s(&store), "build", s(&c), "--out", s(&out)]);
    assert_eq!(code, 0, "build: {o}{e}");
    let times = fs::read_to_string(eif_root(root, &out, "checked").join("times")).unwrap();
    assert_eq!(times, "/app 1700000000\n/app/a 1700000000\n/app/b 1700000000\n");
}

/// A local `ADD` of an archive, which BuildKit would unpack, is refused
/// (eifbake does not unpack) naming the file, rather than copied as it is.
#[test]
fn local_add_of_an_archive_is_refused() {
    if !common::root_or_skip("building a Containerfile with steps") {
        return;
    }
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cf = "ARG BASE\nFROM ${BASE}\nADD plain.txt /p/\nADD data.tar.gz /d/\nCMD [\"/bin/sh\"]\n";
    let dir = project(&reg, root, "addtar", cf, &[("plain.txt", "plain\n", 0o644)]);
    fs::write(dir.join("data.tar.gz"), eifbake_testkit::oci::gzip(b"not really a tar")).unwrap();
    let (store, c) = (root.join("store"), dir.join("Containerfile"));
    let (code, o, e) = eifbake(&["--store", s(&store), "lock", s(&c)]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = eifbake(&["--store", s(&store), "build", s(&c), "--out", s(&root.join("out"))]);
    assert_eq!(code, 2, "{o}{e}");
    assert!(e.contains("data.tar.gz is an archive"), "{e}");
}
