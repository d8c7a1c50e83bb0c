//! `eifbake completions` and `eifbake man`: generated from the clap
//! definitions, so every subcommand (nested ones too) appears in each shell's
//! script and in the manual pages.

mod common;

use std::fs;
use std::process::Command;

use clap::CommandFactory;
use eifbake::args::Cli;

/// Every subcommand path, `store import` style, from the clap definitions.
fn subcommands() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

fn eifbake_ok(args: &[&str]) -> String {
    let out = common::bin::eifbake_cmd().args(args).output().unwrap();
    assert!(out.status.success(), "eifbake {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_subcommand_list_is_the_real_one() {
    let names: Vec<String> = subcommands().into_iter().map(|p| p.join(" ")).collect();
    for n in ["lock", "build", "verify", "init", "completions", "man", "store import", "store gc"] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
}

#[test]
fn completion_scripts_mention_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = eifbake_ok(&["completions", shell]);
        for path in subcommands() {
            let name = path.last().unwrap();
            assert!(script.contains(name.as_str()), "{shell} completions lack {}", path.join(" "));
        }
        // Options of subcommands are completed too.
        let (template, lockfile) =
            if shell == "fish" { ("-l template", "-l lockfile") } else { ("--template", "--lockfile") };
        assert!(script.contains(template) && script.contains(lockfile), "{shell}: options missing");
    }
    // bash parses its script.
    let script = eifbake_ok(&["completions", "bash"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("eifbake.bash");
    fs::write(&file, &script).unwrap();
    let st = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(st.success(), "bash -n refuses the completion script");
    // An unknown shell is a usage error.
    let out = common::bin::eifbake_cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let page = eifbake_ok(&["man"]);
    assert!(
        page.starts_with(".ie") && page.contains(".TH eifbake 1"),
        "not roff: {}",
        &page[..100.min(page.len())]
    );
    for path in subcommands().iter().filter(|p| p.len() == 1 && p[0] != "help") {
        // roff escapes every hyphen, those inside a subcommand's name (`sign-payload`) too.
        let reference = format!("eifbake\\-{}(1)", path[0].replace('-', "\\-"));
        assert!(page.contains(&reference), "eifbake.1 lacks {reference}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let listed = eifbake_ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(dir.join("eifbake.1").is_file(), "{listed}");
    for path in subcommands().iter().filter(|p| p[0] != "help" && p.last().unwrap() != "help") {
        let file = dir.join(format!("eifbake-{}.1", path.join("-")));
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}\n{listed}", file.display()));
        assert!(text.contains(".SH NAME"), "{}", file.display());
        assert!(listed.contains(file.to_str().unwrap()), "{listed}");
    }
    // The pages depend on nothing but the binary.
    assert_eq!(fs::read_to_string(dir.join("eifbake.1")).unwrap(), page);
}

/// `make install` (with the binary under test, not a release build) puts
/// the binary, the three completion scripts and the man pages under PREFIX.
#[test]
fn make_install_installs_binary_completions_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let out = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", "-o", "build", "install"])
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("BIN={}", common::bin::EIFBAKE))
        .output()
        .expect("run make");
    assert!(out.status.success(), "make install: {}", String::from_utf8_lossy(&out.stderr));
    let bin = prefix.join("bin/eifbake");
    assert_eq!(fs::read(&bin).unwrap(), fs::read(common::bin::EIFBAKE).unwrap());
    for (file, shell) in [
        ("share/bash-completion/completions/eifbake", "bash"),
        ("share/zsh/site-functions/_eifbake", "zsh"),
        ("share/fish/vendor_completions.d/eifbake.fish", "fish"),
    ] {
        assert_eq!(
            fs::read_to_string(prefix.join(file)).unwrap(),
            eifbake_ok(&["completions", shell]),
            "{file}"
        );
    }
    assert_eq!(fs::read_to_string(prefix.join("share/man/man1/eifbake.1")).unwrap(), eifbake_ok(&["man"]));
    assert!(prefix.join("share/man/man1/eifbake-init.1").is_file());
}
