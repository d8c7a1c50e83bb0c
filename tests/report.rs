//! The recipe's `report`: named enclave paths whose sha256 and size the
//! manifest records (`outputs.files`), so a user can check what a running
//! enclave serves. Built for real from the busybox fixture image pulled
//! from a loopback registry: the digests are `sha256sum`'s of the sources, a
//! symlink is reported as a symlink and never followed, a path that is not
//! a regular file or symlink of the image is refused naming it, and
//! `verify` compares the reported files like the rest.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eifbake, TestRegistry};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The step copies the site into /out/www (served at /srv/www), adds a
/// symlink to the host-looking `/etc/passwd` and a relative one, and
/// `/srv/site` is a symlink to `www` (a parent directory reached through a
/// symlink).
const SCRIPT: &str = "mkdir -p /out/www\ncp index.html app.js /out/www/\n\
                      ln -s /etc/passwd /out/www/passwd\nln -s index.html /out/www/latest\nln -s www /out/site";

struct Site {
    _reg: TestRegistry,
    dir: tempfile::TempDir,
    recipe: PathBuf,
}

impl Site {
    /// A project whose recipe reports `report` (a TOML array), locked.
    fn new(report: &str) -> Site {
        let reg = TestRegistry::start();
        let _f = common::push_fixtures(&reg);
        let dir = tempfile::tempdir().unwrap();
        let rdir = dir.path().join("recipes/v");
        fs::create_dir_all(rdir.join("app")).unwrap();
        fs::write(rdir.join("app/index.html"), "<h1>served</h1>\n").unwrap();
        fs::write(rdir.join("app/app.js"), "console.log('app');\n".repeat(100)).unwrap();
        let text =
            common::busybox_step_recipe("v", "1.0.0", &reg.image("fx/busybox:1"), "path = \"app\"", SCRIPT)
                .replace(
                    "outputs = { \"/out/r\" = \"/r\" }",
                    "outputs = { \"/out/www\" = \"/srv/www\", \"/out/site\" = \"/srv/site\" }",
                );
        let recipe = rdir.join("recipe.toml");
        fs::write(&recipe, format!("report = {report}\n{text}")).unwrap();
        let site = Site { _reg: reg, dir, recipe };
        let (c, o, e) = site.eifbake(&["lock", s(&site.recipe)]);
        assert_eq!(c, 0, "{o}{e}");
        site
    }

    fn eifbake(&self, args: &[&str]) -> (i32, String, String) {
        let store = self.dir.path().join("store");
        let mut a = vec!["--store", s(&store)];
        a.extend_from_slice(args);
        eifbake(&a)
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn build(&self) -> (i32, String, String) {
        self.eifbake(&["build", s(&self.recipe), "--out", s(&self.out())])
    }

    /// `sha256sum FILE` of a source file, as `sha256:HEX`.
    fn sha256sum(&self, file: &str) -> String {
        let out =
            Command::new("sha256sum").arg(self.dir.path().join("recipes/v/app").join(file)).output().unwrap();
        assert!(out.status.success());
        format!("sha256:{}", String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap())
    }
}

#[test]
fn named_files_are_reported_by_digest_symlinks_as_links_and_verify_compares_them() {
    let site =
        Site::new(r#"["/srv/www/index.html", "/srv/site/app.js", "/srv/www/passwd", "/srv/www/latest"]"#);
    let (c, o, e) = site.build();
    assert_eq!(c, 0, "{o}{e}");
    let manifest = site.out().join("v.manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    let files = &m["outputs"]["files"];
    // Sorted by path; a parent reached through a symlink is resolved inside the image.
    assert_eq!(
        files,
        &serde_json::json!([
            { "path": "/srv/site/app.js", "sha256": site.sha256sum("app.js"), "size": 2000 },
            { "path": "/srv/www/index.html", "sha256": site.sha256sum("index.html"), "size": 16 },
            { "path": "/srv/www/latest", "symlink": "index.html" },
            // Not followed: the build host's /etc/passwd is nowhere in the manifest.
            { "path": "/srv/www/passwd", "symlink": "/etc/passwd" },
        ]),
        "{m:#}"
    );
    // verify: the rebuild reports the same files, GOOD; a tampered digest is BAD, naming the file.
    let source = format!("app={}", s(&site.dir.path().join("recipes/v/app")));
    let (c, o, e) = eifbake(&["verify", "--json", s(&manifest), "--source", &source]);
    assert_eq!(c, 0, "{o}{e}");
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["verdict"], "GOOD", "{v:#}");
    let names: Vec<&str> =
        v["figures"].as_array().unwrap().iter().map(|f| f["what"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"file /srv/www/index.html") && names.contains(&"file /srv/www/passwd"),
        "{names:?}"
    );
    let mut t = m.clone();
    t["outputs"]["files"][1]["sha256"] = serde_json::Value::from(site.sha256sum("app.js"));
    let tampered = site.dir.path().join("tampered.manifest.json");
    fs::write(&tampered, serde_json::to_vec_pretty(&t).unwrap()).unwrap();
    let (c, o, e) = eifbake(&["verify", "--json", s(&tampered), "--source", &source]);
    assert_eq!(c, 1, "{o}{e}");
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["verdict"], "BAD");
    let bad: Vec<&str> = v["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| f["what"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["file /srv/www/index.html"], "{v:#}");
}

/// A named path that is not in the image, a directory, or under a missing
/// directory: the build stops (exit 2) naming the recipe and the path, and
/// publishes nothing.
#[test]
fn a_path_that_is_not_a_file_of_the_image_is_refused_naming_it() {
    for (path, why) in [
        ("/srv/www/missing.html", "is not in the enclave's root filesystem"),
        ("/srv/www", "is a directory"),
        ("/nowhere/index.html", "a parent directory is not in the enclave's root filesystem"),
    ] {
        let site = Site::new(&format!("[\"/srv/www/index.html\", {path:?}]"));
        let (c, o, e) = site.build();
        assert_eq!(c, 2, "{path}: {o}{e}");
        assert!(e.contains(&format!("report {path:?}: {why}")) && e.contains("recipe.toml"), "{path}: {e}");
        assert!(!site.out().join("v.manifest.json").exists() && !site.out().join("v.eif").exists());
    }
}
