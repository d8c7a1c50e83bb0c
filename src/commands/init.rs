//! `eifbake init`: write a starter project (a commented recipe and a tiny
//! app) from one of the templates under `templates/` in the repository,
//! compiled into the binary.
//!
//! What it is for: a first recipe that locks and builds as it stands
//! against the demo's fixture images (`make demo` serves them on
//! 127.0.0.1:5055; a test pushes them elsewhere and reaches them through
//! `--registry-mirror`), to be edited from there. Not for: choosing images,
//! locking or building (the user runs `eifbake lock` and `build`).
//!
//! Invariants: no existing file is ever overwritten or changed: when any
//! file the template would write exists, nothing is written and the error
//! names every such file. Files are written with mode 0644 (0755 for
//! scripts), so the tree hash of the app does not depend on the umask.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::args::{InitArgs, Template};

/// One file of a template: its path below DIR, its text, whether it is executable.
type TemplateFile = (&'static str, &'static str, bool);

const STATIC: &[TemplateFile] = &[
    ("recipe.toml", include_str!("../../templates/static/recipe.toml"), false),
    ("app/hello.sh", include_str!("../../templates/static/app/hello.sh"), true),
];

const RUST: &[TemplateFile] = &[
    ("recipe.toml", include_str!("../../templates/rust/recipe.toml"), false),
    ("app/Cargo.toml", include_str!("../../templates/rust/app/Cargo.toml"), false),
    ("app/Cargo.lock", include_str!("../../templates/rust/app/Cargo.lock"), false),
    ("app/src/main.rs", include_str!("../../templates/rust/app/src/main.rs"), false),
];

const GO: &[TemplateFile] = &[
    ("recipe.toml", include_str!("../../templates/go/recipe.toml"), false),
    ("app/go.mod", include_str!("../../templates/go/app/go.mod"), false),
    ("app/main.go", include_str!("../../templates/go/app/main.go"), false),
];

/// The files of `template`, with `@NAME@` replaced by `name`.
pub fn files(template: Template, name: &str) -> Vec<(&'static str, String, bool)> {
    let set = match template {
        Template::Static => STATIC,
        Template::Rust => RUST,
        Template::Go => GO,
    };
    set.iter().map(|(path, text, exec)| (*path, text.replace("@NAME@", name), *exec)).collect()
}

/// The recipe name for a project in `dir`: its directory name, reduced to
/// the characters recipe names allow, else `enclave`.
pub fn recipe_name(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = abs.components().next_back().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let cleaned: String = base
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(crate::recipe::NAME_MAX)
        .collect();
    if cleaned.is_empty() {
        "enclave".into()
    } else {
        cleaned
    }
}

pub fn run(args: InitArgs) -> Result<ExitCode> {
    let name = recipe_name(&args.dir);
    let files = files(args.template, &name);
    let existing: Vec<PathBuf> =
        files.iter().map(|(p, _, _)| args.dir.join(p)).filter(|p| p.symlink_metadata().is_ok()).collect();
    if !existing.is_empty() {
        let list: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "eifbake init: {} already exist{}; nothing was written (move {} away, or init another directory)",
            list.join(", "),
            if existing.len() == 1 { "s" } else { "" },
            if existing.len() == 1 { "it" } else { "them" }
        );
    }
    for (rel, text, exec) in &files {
        let path = args.dir.join(rel);
        write_new(&path, text, *exec)?;
        outln!("wrote {}", path.display());
    }
    let dir = args.dir.display();
    outln!(
        "next: `eifbake lock {dir}` and `eifbake build {dir}`; the recipe names the demo's images on \
         127.0.0.1:5055 (scripts/demo.sh serves them): see its comments"
    );
    Ok(ExitCode::SUCCESS)
}

/// Create `path` (and its parents) holding `text`; fails if it exists.
fn write_new(path: &Path, text: &str, exec: bool) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("eifbake init: cannot create {}", parent.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("eifbake init: cannot create {} (it must not exist)", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("eifbake init: cannot write {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))
        .with_context(|| format!("eifbake init: cannot set the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_names_come_from_the_directory_and_are_valid() {
        assert_eq!(recipe_name(Path::new("/x/my enclave!")), "my-enclave-");
        assert_eq!(recipe_name(Path::new("/x/.hidden")), "hidden");
        assert_eq!(recipe_name(Path::new("/")), "enclave");
        assert_eq!(recipe_name(Path::new(&"a".repeat(100))).len(), crate::recipe::NAME_MAX);
        for t in [Template::Static, Template::Rust, Template::Go] {
            let (_, recipe, _) = &files(t, "my-enclave-")[0];
            crate::recipe::Recipe::parse(recipe).unwrap();
        }
    }
}
