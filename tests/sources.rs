//! Sources end to end: git repositories over file:// and git://
//! (`git daemon` on loopback), a local directory edited after locking, and
//! URL downloads from a loopback HTTP server started by the test.

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::git::git;
use common::http::HttpServer;
use eifbake::digest::Digest;
use eifbake::recipe::Source;
use eifbake::sources::{check_rev, materialize, resolve, tree_hash, Pin};

fn source(toml_text: &str) -> Source {
    toml::from_str(toml_text).unwrap()
}

/// A repository with a main branch (two files, an executable, a symlink), a
/// side branch and an annotated tag `v1` on the first commit.
fn make_repo(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("README"), "hello\n").unwrap();
    fs::create_dir(repo.join("bin")).unwrap();
    fs::write(repo.join("bin/run"), "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(repo.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("README", repo.join("link")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    repo
}

/// The tree hash of a working tree, not counting `.git`.
fn worktree_hash(repo: &Path) -> Digest {
    tree_hash(repo, &[".git".into()]).unwrap()
}

#[test]
fn git_over_file_url_resolves_materialises_and_detects_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path());
    let url = format!("file://{}", repo.display());
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let src = source(&format!("git = {url:?}\nrev = \"main\""));

    let pin = resolve("app", &src, tmp.path()).unwrap();
    assert_eq!(pin.kind, "git");
    assert_eq!(pin.commit.as_deref(), Some(first.as_str()));
    assert_eq!(pin.tree, worktree_hash(&repo));

    // The tag resolves to the same (peeled) commit.
    let tagged = resolve("app", &source(&format!("git = {url:?}\nrev = \"v1\"")), tmp.path()).unwrap();
    assert_eq!((&tagged.commit, tagged.tree), (&pin.commit, pin.tree));
    assert_eq!(tagged.rev.as_deref(), Some("v1"), "the pin records the rev it came from");

    let dest = tmp.path().join("tree");
    assert_eq!(materialize("app", &src, tmp.path(), &pin, &dest).unwrap(), pin.tree);
    assert!(!dest.join(".git").exists());
    assert_eq!(fs::read_to_string(dest.join("README")).unwrap(), "hello\n");
    assert_eq!(fs::metadata(dest.join("bin/run")).unwrap().permissions().mode() & 0o100, 0o100);
    assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("README"));

    // The branch moves: lock --update semantics see it, build still uses the locked commit.
    fs::write(repo.join("README"), "changed\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let err = check_rev("app", &url, "main", &first).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.app: rev \"main\" of {url} moved: locked {first}, now {second}; \
             run `eifbake lock --update` to take the new commit"
        )
    );
    check_rev("app", &url, "main", &second).unwrap();
    let dest2 = tmp.path().join("tree2");
    materialize("app", &src, tmp.path(), &pin, &dest2).unwrap();
    assert_eq!(fs::read_to_string(dest2.join("README")).unwrap(), "hello\n");

    // A lock whose tree hash does not match what the commit holds is refused.
    let wrong = Pin { tree: Digest::of(b"not this tree"), ..pin.clone() };
    let err =
        materialize("app", &src, tmp.path(), &wrong, &tmp.path().join("tree3")).unwrap_err().to_string();
    assert!(err.starts_with("sources.app: tree hash differs from the lock"), "{err}");
    assert!(!tmp.path().join("tree3").exists());
}

#[test]
fn git_commit_gone_from_the_server_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path());
    git(&repo, &["checkout", "-q", "-b", "side"]);
    fs::write(repo.join("side.txt"), "side\n").unwrap();
    git(&repo, &["add", "side.txt"]);
    git(&repo, &["commit", "-q", "-m", "side"]);
    let url = format!("file://{}", repo.display());
    let src = source(&format!("git = {url:?}\nrev = \"side\""));
    let pin = resolve("lib", &src, tmp.path()).unwrap();
    let gone = pin.commit.clone().unwrap();

    // Rewrite history: the side branch and its commit disappear.
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["branch", "-q", "-D", "side"]);
    git(&repo, &["reflog", "expire", "--expire=now", "--all"]);
    git(&repo, &["gc", "-q", "--prune=now"]);

    let dest = tmp.path().join("tree");
    let err = materialize("lib", &src, tmp.path(), &pin, &dest).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.lib: commit {gone} is not available from {url} (rewritten history, or a wrong \
             commit id?); run `eifbake lock --update` to pin a commit that exists"
        )
    );
    assert!(!dest.exists(), "a failed materialisation left its directory behind");
    let err = resolve("lib", &src, tmp.path()).unwrap_err().to_string();
    assert!(err.contains("rev \"side\" not found"), "{err}");
}

/// `git daemon` serving a base directory on a free loopback port.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("git")
            .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_over_git_daemon_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path());
    let daemon = GitDaemon::start(tmp.path());
    let url = format!("git://127.0.0.1:{}/repo", daemon.port);
    let src = source(&format!("git = {url:?}"));
    let pin = resolve("app", &src, tmp.path()).unwrap();
    assert_eq!(pin.commit.as_deref(), Some(git(&repo, &["rev-parse", "HEAD"]).as_str()));
    assert_eq!(pin.tree, worktree_hash(&repo));
    materialize("app", &src, tmp.path(), &pin, &tmp.path().join("tree")).unwrap();
    assert_eq!(fs::read_to_string(tmp.path().join("tree/README")).unwrap(), "hello\n");
}

#[test]
fn local_directory_edited_after_lock_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    fs::create_dir_all(app.join("src")).unwrap();
    fs::write(app.join("src/main.sh"), "echo hi\n").unwrap();
    fs::create_dir_all(app.join("target")).unwrap();
    fs::write(app.join("target/build.log"), "noise\n").unwrap();
    let src = source("path = \"app\"\nignore = [\"target\"]");
    let pin = resolve("app", &src, tmp.path()).unwrap();
    assert_eq!(
        pin,
        Pin {
            kind: "path".into(),
            rev: None,
            url: None,
            commit: None,
            tree: pin.tree,
            sha256: None,
            crates: vec![]
        }
    );

    // Ignored paths may change; the copy leaves them out.
    fs::write(app.join("target/build.log"), "more noise\n").unwrap();
    let dest = tmp.path().join("m1");
    assert_eq!(materialize("app", &src, tmp.path(), &pin, &dest).unwrap(), pin.tree);
    assert!(!dest.join("target").exists());
    assert_eq!(fs::read_to_string(dest.join("src/main.sh")).unwrap(), "echo hi\n");

    fs::write(app.join("src/main.sh"), "echo edited\n").unwrap();
    let now = tree_hash(&app, &["target".into()]).unwrap();
    let dest = tmp.path().join("m2");
    let err = materialize("app", &src, tmp.path(), &pin, &dest).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "sources.app: local tree changed since lock: expected {}, found {now}",
            pin.tree
        )),
        "{err}"
    );
    assert!(!dest.exists());
}

#[test]
fn url_source_is_checked_against_its_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HttpServer::start();
    let body = b"#!/bin/sh\necho downloaded\n";
    let url = server.serve("/files/tool.sh?x=1", body);
    let sha = Digest::of(body);
    let src = source(&format!("url = {url:?}\nsha256 = \"{sha}\""));
    let pin = resolve("tool", &src, tmp.path()).unwrap();
    assert_eq!(pin.sha256, Some(sha));
    let dest = tmp.path().join("t1");
    materialize("tool", &src, tmp.path(), &pin, &dest).unwrap();
    assert_eq!(fs::read(dest.join("tool.sh")).unwrap(), body);
    assert!(server.requests.load(Ordering::SeqCst) >= 2);

    // The server now serves other bytes under the same URL.
    server.serve("/files/tool.sh?x=1", b"#!/bin/sh\necho tampered\n");
    let dest = tmp.path().join("t2");
    let err = materialize("tool", &src, tmp.path(), &pin, &dest).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.tool: download of {url} has sha256 {}, but the recipe pins {sha}",
            Digest::of(b"#!/bin/sh\necho tampered\n")
        )
    );
    assert!(!dest.exists());

    let missing = format!("http://127.0.0.1:{}/nope", server.port);
    let src = source(&format!("url = {missing:?}\nsha256 = \"{sha}\""));
    let err = resolve("tool", &src, tmp.path()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("sources.tool: download of {missing} failed")), "{err}");
}

#[test]
fn url_tarball_is_unpacked() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HttpServer::start();
    let mut builder =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, mode, data) in [("pkg/a.txt", 0o644, &b"a\n"[..]), ("pkg/bin/tool", 0o755, &b"tool\n"[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        builder.append_data(&mut h, path, data).unwrap();
    }
    let tgz = builder.into_inner().unwrap().finish().unwrap();
    let sha = Digest::of(&tgz);
    let url = server.serve("/pkg.tar.gz", &tgz);
    let src = source(&format!("url = {url:?}\nsha256 = \"{sha}\"\nunpack = true"));
    let pin = resolve("pkg", &src, tmp.path()).unwrap();
    let dest = tmp.path().join("pkg");
    materialize("pkg", &src, tmp.path(), &pin, &dest).unwrap();
    assert_eq!(fs::read(dest.join("pkg/a.txt")).unwrap(), b"a\n");
    assert_eq!(fs::metadata(dest.join("pkg/bin/tool")).unwrap().permissions().mode() & 0o100, 0o100);
    // The same tree made by hand hashes the same.
    let manual = tmp.path().join("manual");
    fs::create_dir_all(manual.join("pkg/bin")).unwrap();
    fs::write(manual.join("pkg/a.txt"), "a\n").unwrap();
    fs::write(manual.join("pkg/bin/tool"), "tool\n").unwrap();
    fs::set_permissions(manual.join("pkg/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(pin.tree, tree_hash(&manual, &[]).unwrap());
}

#[test]
fn source_cache_serves_offline_and_refuses_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = make_repo(tmp.path());
    let url = format!("file://{}", repo.display());
    let src = source(&format!("git = {url:?}"));
    let pin = resolve("app", &src, tmp.path()).unwrap();
    let cache = eifbake::sources::SourceCache::new(tmp.path().join("cache"));

    // Offline with an empty cache: refused, naming the source.
    let err = cache.get("app", &src, tmp.path(), &pin, true).unwrap_err().to_string();
    assert!(err.starts_with("sources.app: tree sha256:") && err.contains("--offline"), "{err}");

    let dir = cache.get("app", &src, tmp.path(), &pin, false).unwrap();
    assert_eq!(dir, tmp.path().join("cache").join(pin.tree.hex()));
    assert_eq!(tree_hash(&dir, &[]).unwrap(), pin.tree);

    // The server goes away: the cached tree still serves, offline.
    let moved = tmp.path().join("repo-away");
    fs::rename(&repo, &moved).unwrap();
    assert_eq!(cache.get("app", &src, tmp.path(), &pin, true).unwrap(), dir);

    // A damaged entry is not used, online or offline, and not removed
    // (another build may be reading it): the error names it and the way out.
    fs::rename(&moved, &repo).unwrap();
    fs::write(dir.join("README"), "tampered\n").unwrap();
    for offline in [true, false] {
        let err = cache.get("app", &src, tmp.path(), &pin, offline).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("sources.app: source cache entry {} is damaged", dir.display()))
                && err.contains("`eifbake store gc --caches`"),
            "{err}"
        );
    }
    assert_eq!(fs::read_to_string(dir.join("README")).unwrap(), "tampered\n");
    let leftovers: Vec<_> =
        fs::read_dir(tmp.path().join("cache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(leftovers, vec![dir], "temporary directories left in the cache");
}

/// Two caches racing to publish one tree: both get the same sound entry,
/// and neither replaces the other's (each publishes by a rename that never
/// replaces).
#[test]
fn source_cache_concurrent_publishers_share_one_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    fs::create_dir_all(app.join("d")).unwrap();
    for i in 0..50 {
        fs::write(app.join("d").join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    let src = source("path = \"app\"");
    let pin = resolve("app", &src, tmp.path()).unwrap();
    let cache = eifbake::sources::SourceCache::new(tmp.path().join("cache"));
    let dirs: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..4).map(|_| s.spawn(|| cache.get("app", &src, tmp.path(), &pin, false).unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(dirs.iter().all(|d| *d == dirs[0]));
    assert_eq!(tree_hash(&dirs[0], &[]).unwrap(), pin.tree);
    assert_eq!(fs::read_dir(tmp.path().join("cache")).unwrap().count(), 1, "temporary directories left");
}

/// A zip entry: (name, unix mode, data); a mode with the symlink type bit
/// makes a symbolic link to `data`.
type ZipEntry<'a> = (&'a str, u32, &'a [u8]);

/// A zip archive of deflated entries.
fn zip_of(entries: &[ZipEntry]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, mode, data) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        if mode & 0o170000 == 0o120000 {
            z.add_symlink(*name, std::str::from_utf8(data).unwrap(), opts).unwrap();
        } else {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
    }
    z.finish().unwrap().into_inner()
}

/// A zip `url` (a file:// one: pinned by sha256 like any download) unpacks
/// to the same tree as the same files made by hand, owner-exec bits kept.
#[test]
fn url_zip_from_a_file_url_is_unpacked_and_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = zip_of(&[("pkg/a.txt", 0o644, b"a\n"), ("pkg/bin/tool", 0o755, b"tool\n")]);
    let file = tmp.path().join("pkg.zip");
    fs::write(&file, &zip).unwrap();
    let url = format!("file://{}", file.display());
    let sha = Digest::of(&zip);
    let src = source(&format!("url = {url:?}\nsha256 = \"{sha}\"\nunpack = true"));
    let pin = resolve("pkg", &src, tmp.path()).unwrap();
    let dest = tmp.path().join("pkg");
    materialize("pkg", &src, tmp.path(), &pin, &dest).unwrap();
    assert_eq!(fs::read(dest.join("pkg/a.txt")).unwrap(), b"a\n");
    let manual = tmp.path().join("manual");
    fs::create_dir_all(manual.join("pkg/bin")).unwrap();
    fs::write(manual.join("pkg/a.txt"), "a\n").unwrap();
    fs::write(manual.join("pkg/bin/tool"), "tool\n").unwrap();
    fs::set_permissions(manual.join("pkg/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(pin.tree, tree_hash(&manual, &[]).unwrap());

    // The file changes: the pin refuses it.
    fs::write(&file, b"other bytes").unwrap();
    let err = materialize("pkg", &src, tmp.path(), &pin, &tmp.path().join("again")).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.pkg: download of {url} has sha256 {}, but the recipe pins {sha}",
            Digest::of(b"other bytes")
        )
    );
    let src = source(&format!("url = \"ftp://example.invalid/x\"\nsha256 = \"{sha}\""));
    let err = resolve("pkg", &src, tmp.path()).unwrap_err().to_string();
    assert!(err.contains("expected an https://, http:// or file:// URL"), "{err}");
}

/// Zip entries that would land outside the tree, or links, are refused
/// naming the entry, and nothing is written outside.
#[test]
fn url_zip_entries_that_climb_out_or_link_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<ZipEntry>, &str); 3] = [
        (
            "dotdot",
            vec![("ok.txt", 0o644, b"x"), ("../escaped", 0o644, b"x")],
            "'..' components are not allowed",
        ),
        ("absolute", vec![("/tmp/escaped-zip-by-eifbake-test", 0o644, b"x")], "absolute paths"),
        ("symlink", vec![("link", 0o120777, b"/etc")], "symbolic links are not allowed"),
    ];
    for (label, entries, why) in cases {
        let zip = zip_of(&entries);
        let dir = tmp.path().join(label);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.zip");
        fs::write(&file, &zip).unwrap();
        let src = source(&format!(
            "url = \"file://{}\"\nsha256 = \"{}\"\nunpack = true",
            file.display(),
            Digest::of(&zip)
        ));
        let err = format!("{:#}", resolve("pkg", &src, &dir).unwrap_err());
        let name = entries.last().unwrap().0;
        assert!(err.contains(&format!("zip entry {name:?}: {why}")), "{label}: {err}");
        assert!(!tmp.path().join("escaped").exists() && !dir.join("escaped").exists(), "{label}");
    }
    assert!(!Path::new("/tmp/escaped-zip-by-eifbake-test").exists());
}
