//! Caution's deployment files, `Procfile` and `caution.hcl`, read as an
//! eifbake frontend: `eifbake import` turns one into a commented recipe
//! (`recipe.toml` beside it) that `lock`, `build` and `verify` take like
//! any other.
//!
//! What this module is for: parsing the two spellings of the same fields
//! (a Procfile's `key: value` lines; the `key = "value"` / list / number /
//! boolean attributes of `caution.hcl`, a small hand parser: no blocks, no
//! interpolation), checking them as untrusted input, and rendering the
//! recipe text ([`render`]). What each field becomes:
//!
//! - `run`: `enclave.command`, split on spaces (no shell: quotes, `$`,
//!   `;`, `|`, … are refused; an HCL list is the argv as given);
//! - `containerfile`: `containerfile`, with `containerfile_context = "."`
//!   (Caution builds with the repository root as context); absent (and no
//!   `oci_tarball`), `Containerfile` or `Dockerfile` at the root;
//! - `oci_tarball`: an image `app` the user imports with `eifbake store
//!   import FILE --name REF` (the recipe's comment says so), the root
//!   filesystem;
//! - `binary`: only that file of the final stage or image goes into the
//!   root (`containerfile_only`, or a root step for an OCI tarball);
//! - `app_sources`, `enclave_sources`, `metadata`: `enclave.app_sources`,
//!   `enclave.enclave_sources`, `enclave.metadata` (measured: the PCRs
//!   commit to them, as Caution embeds them for attestation);
//! - `memory`, `cpus`: `enclave.memory_mib`, `enclave.cpus`;
//! - `domain`, `e2e`, `debug`, `no_cache`, `ports`, `http_port`, `disk_gb`,
//!   `locksmith`: `[deployment]` (the manifest's `origin.deployment`,
//!   never measured);
//! - refused, naming the line: `build` (legacy, gone from Caution too) and
//!   `ssh_keys` (an EIF eifbake builds has no SSH server to take them).
//!
//! Not for: building (the recipe is the reviewed, lockable artifact, and
//! it holds the kernel, init and command line a Procfile lacks) or any
//! deployment. Nothing here runs a command or reaches the network.
//!
//! Invariants: every error names the file, the line and the key; every
//! path a file names stays inside the repository (relative, no `..`, no
//! symlink leading out: [`check_paths`]); `binary` is a normal absolute
//! path of the container; source URLs are `https://`, `git://` or
//! `ssh://` with no shell metacharacters; [`render`] is a pure function of
//! the parsed fields and options (same input, same bytes).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Which spelling a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `key: value` lines.
    Procfile,
    /// `key = value` attributes (`caution.hcl`).
    Hcl,
}

impl Format {
    /// `caution.hcl` (any name ending in `.hcl`) is HCL; anything else a Procfile.
    pub fn of(path: &Path) -> Format {
        match path.extension() {
            Some(e) if e == "hcl" => Format::Hcl,
            _ => Format::Procfile,
        }
    }
}

/// A raw value: a Procfile's text, or an HCL string, number, boolean (as text) or list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    List(Vec<String>),
}

/// The fields of a deployment file, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    pub run: Vec<String>,
    pub containerfile: Option<String>,
    pub oci_tarball: Option<String>,
    pub binary: Option<String>,
    pub app_sources: Vec<String>,
    pub enclave_sources: Vec<String>,
    pub metadata: Option<String>,
    pub memory_mib: Option<u64>,
    pub cpus: Option<u64>,
    /// Deployment-only fields, canonical text (`ports` joined by `,`).
    pub deployment: BTreeMap<String, String>,
    /// The line each field was given on, for errors found later ([`check_paths`]).
    pub lines: BTreeMap<String, u32>,
}

/// Fields that only a deployment uses, kept in `[deployment]`.
pub const DEPLOYMENT_ONLY: [&str; 8] =
    ["domain", "e2e", "debug", "no_cache", "ports", "http_port", "disk_gb", "locksmith"];

/// Every field read (the others are refused as unknown).
const KNOWN: [&str; 19] = [
    "run",
    "containerfile",
    "oci_tarball",
    "binary",
    "build",
    "app_sources",
    "enclave_sources",
    "metadata",
    "memory",
    "cpus",
    "ssh_keys",
    "domain",
    "e2e",
    "debug",
    "no_cache",
    "ports",
    "http_port",
    "disk_gb",
    "locksmith",
];

/// Parse and check the deployment file `text` (`file` names it in errors).
pub fn parse(text: &str, file: &str, format: Format) -> Result<Deployment> {
    let entries = match format {
        Format::Procfile => procfile_entries(text, file)?,
        Format::Hcl => hcl_entries(text, file)?,
    };
    let mut d = Deployment::default();
    for (line, key, value) in entries {
        let at = |e: anyhow::Error| anyhow::anyhow!("{file}:{line}: {key}: {e:#}");
        if let Some(first) = d.lines.insert(key.clone(), line) {
            return Err(at(anyhow::anyhow!("given twice (also on line {first}); keep one")));
        }
        field(&mut d, &key, value).map_err(at)?;
    }
    if d.run.is_empty() {
        bail!("{file}: run: missing; give the command the enclave runs, e.g. `run: /app/server`");
    }
    if d.containerfile.is_some() && d.oci_tarball.is_some() {
        let line = d.lines["oci_tarball"];
        bail!("{file}:{line}: oci_tarball: give either containerfile or oci_tarball, not both");
    }
    if let Some(b) = &d.binary {
        if &d.run[0] != b {
            let line = d.lines["run"];
            bail!("{file}:{line}: run: with binary = {b:?} only that file is in the enclave; run must start with it");
        }
    }
    Ok(d)
}

/// A Procfile's `key: value` lines (comments `#`, blank lines skipped).
fn procfile_entries(text: &str, file: &str) -> Result<Vec<(u32, String, Value)>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u32 + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            bail!("{file}:{line}: {t:?} is not `key: value`; every line of a Procfile is one field");
        };
        let key = key.trim();
        check_key(key).with_context(|| format!("{file}:{line}"))?;
        out.push((line, key.to_string(), Value::Text(value.trim().to_string())));
    }
    Ok(out)
}

fn check_key(key: &str) -> Result<()> {
    let ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        bail!("{key:?} is not a field name (lowercase letters, digits and '_')");
    }
    Ok(())
}

/// `caution.hcl`'s attributes: `key = "string"`, a number, `true`/`false`,
/// or a list of strings (which may span lines); comments `#` and `//`.
fn hcl_entries(text: &str, file: &str) -> Result<Vec<(u32, String, Value)>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line = i as u32 + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
            continue;
        }
        let at = |e: anyhow::Error| anyhow::anyhow!("{file}:{line}: {e:#}");
        let Some((key, value)) = t.split_once('=') else {
            let what = if t.ends_with('{') { "blocks are not supported" } else { "not `key = value`" };
            return Err(at(anyhow::anyhow!(
                "{t:?}: {what}; caution.hcl takes the Procfile's fields as attributes"
            )));
        };
        let key = key.trim();
        check_key(key).map_err(at)?;
        let mut value = value.trim().to_string();
        if value.starts_with('[') {
            while !list_closed(&value) {
                let Some((_, more)) = lines.next() else {
                    return Err(at(anyhow::anyhow!("{key}: the list has no closing ]")));
                };
                value.push(' ');
                value.push_str(more.trim());
            }
        }
        let v = hcl_value(&value).map_err(|e| at(anyhow::anyhow!("{key}: {e:#}")))?;
        out.push((line, key.to_string(), v));
    }
    Ok(out)
}

/// Whether a list's text has its closing `]` (outside strings).
fn list_closed(s: &str) -> bool {
    let mut in_str = false;
    let mut esc = false;
    for c in s.chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (_, _, '"') => in_str = !in_str,
            (false, _, ']') => return true,
            _ => {}
        }
    }
    false
}

fn hcl_value(s: &str) -> Result<Value> {
    let s = strip_comment(s);
    if s.starts_with('"') {
        let (v, rest) = hcl_string(s)?;
        if !rest.trim().is_empty() {
            bail!("{:?} after the string", rest.trim());
        }
        return Ok(Value::Text(v));
    }
    if let Some(inner) = s.strip_prefix('[') {
        return hcl_list(inner).map(Value::List);
    }
    if s == "true" || s == "false" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(Value::Text(s.to_string()));
    }
    bail!("{s:?}: expected a \"string\", a number, true, false or a [list]")
}

/// `s` without a trailing `#` or `//` comment outside strings, trimmed.
fn strip_comment(s: &str) -> &str {
    let (mut in_str, mut esc) = (false, false);
    for (i, c) in s.char_indices() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (_, _, '"') => in_str = !in_str,
            (false, _, '#') => return s[..i].trim(),
            (false, _, '/') if s[i..].starts_with("//") => return s[..i].trim(),
            _ => {}
        }
    }
    s.trim()
}

/// A quoted HCL string at the start of `s` (escapes `\"`, `\\`, `\n`,
/// `\t`; no `${…}` interpolation); returns it and the rest.
fn hcl_string(s: &str) -> Result<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                other => bail!("unsupported escape \\{}", other.map(String::from).unwrap_or_default()),
            },
            '$' if s[i..].starts_with("${") => {
                bail!("${{…}} interpolation is not supported; write the value")
            }
            c => out.push(c),
        }
    }
    bail!("the string has no closing quote")
}

fn hcl_list(mut s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix(']') {
            if !rest.trim().is_empty() {
                bail!("{:?} after the list", rest.trim());
            }
            return Ok(out);
        }
        if !s.starts_with('"') {
            bail!("list items must be \"strings\"");
        }
        let (v, rest) = hcl_string(s)?;
        out.push(v);
        s = rest.trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Record one field in `d`, checked.
fn field(d: &mut Deployment, key: &str, value: Value) -> Result<()> {
    match key {
        "run" => d.run = command(value)?,
        "containerfile" => d.containerfile = Some(repo_path(&text(value)?)?),
        "oci_tarball" => d.oci_tarball = Some(repo_path(&text(value)?)?),
        "binary" => d.binary = Some(container_path(&text(value)?)?),
        "build" => bail!(
            "the legacy build command is not supported (Caution no longer runs it either): build in a \
             Containerfile stage and name it with containerfile"
        ),
        "ssh_keys" => bail!(
            "an EIF eifbake builds has no SSH server to take keys; remove the line (debug access is a \
             deployment matter, not part of the measured image)"
        ),
        "app_sources" => d.app_sources = urls(value)?,
        "enclave_sources" => d.enclave_sources = urls(value)?,
        "metadata" => d.metadata = Some(one_line(text(value)?)?),
        "memory" => d.memory_mib = Some(positive(&text(value)?)?),
        "cpus" => d.cpus = Some(positive(&text(value)?)?),
        _ if DEPLOYMENT_ONLY.contains(&key) => {
            let v = deployment_value(key, value)?;
            d.deployment.insert(key.to_string(), v);
        }
        _ => bail!("unknown field; known: {}", KNOWN.join(", ")),
    }
    Ok(())
}

fn text(v: Value) -> Result<String> {
    match v {
        Value::Text(t) if t.is_empty() => bail!("empty value"),
        Value::Text(t) => Ok(t),
        Value::List(_) => bail!("expected one value, not a list"),
    }
}

fn one_line(s: String) -> Result<String> {
    if s.contains(['\n', '\r', '\0']) {
        bail!("must be one line without NUL bytes");
    }
    Ok(s)
}

fn positive(s: &str) -> Result<u64> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{s:?}: expected a positive whole number"),
    }
}

/// Characters `run` refuses: it is split on spaces, never given to a shell.
const SHELL_CHARS: &[char] =
    &['"', '\'', '\\', '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '*', '?', '~', '!', '\0'];

fn command(v: Value) -> Result<Vec<String>> {
    let argv: Vec<String> = match v {
        Value::Text(t) => {
            if let Some(c) = t.chars().find(|c| SHELL_CHARS.contains(c)) {
                bail!(
                    "{c:?}: run is split on spaces into the program and its arguments, with no shell; \
                     for quoting or shell syntax, run a script of the image (or give caution.hcl a list)"
                );
            }
            t.split_whitespace().map(String::from).collect()
        }
        Value::List(l) => l,
    };
    match argv.first() {
        None => bail!("empty value"),
        Some(a) if a.is_empty() || argv.iter().any(|a| a.contains('\0')) => {
            bail!("empty program or NUL byte")
        }
        Some(_) => Ok(argv),
    }
}

/// A file of the repository: relative, normal, no `..` (symlinks are
/// checked on disk by [`check_paths`]).
fn repo_path(p: &str) -> Result<String> {
    let path = Path::new(p);
    let normal = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_absolute() || !normal || p.contains('\0') || p.ends_with('/') {
        bail!("{p:?}: expected a file of the repository, relative to its root, without '..'");
    }
    Ok(p.to_string())
}

/// A path in the container: normal and absolute (`/app/server`).
fn container_path(p: &str) -> Result<String> {
    let rest = p.strip_prefix('/').unwrap_or("");
    if rest.is_empty() || p.contains('\0') || rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!(
            "{p:?}: expected the absolute path of a file in the container, e.g. /app/server (no '.' or '..')"
        );
    }
    Ok(p.to_string())
}

/// Comma-separated (or an HCL list of) source URLs: `https://`, `git://`
/// or `ssh://` with a host, of URL-safe characters only.
fn urls(v: Value) -> Result<Vec<String>> {
    let items: Vec<String> = match v {
        Value::Text(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
        Value::List(l) => l,
    };
    for u in &items {
        let rest = ["https://", "git://", "ssh://"].iter().find_map(|s| u.strip_prefix(s));
        let safe = u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~/:@%+-".contains(&b));
        if !matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/')) || !safe {
            bail!(
                "{u:?}: expected a git URL (https://, git:// or ssh://HOST/PATH) of letters, digits and \
                 ._~/:@%+- only"
            );
        }
    }
    Ok(items)
}

fn deployment_value(key: &str, v: Value) -> Result<String> {
    match key {
        "e2e" | "debug" | "no_cache" | "locksmith" => match text(v)?.as_str() {
            b @ ("true" | "false") => Ok(b.to_string()),
            other => bail!("{other:?}: expected true or false"),
        },
        "ports" => {
            let items = match v {
                Value::Text(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
                Value::List(l) => l,
            };
            let ports = items.iter().map(|p| port(p)).collect::<Result<Vec<_>>>()?;
            Ok(ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
        }
        "http_port" => port(&text(v)?).map(|p| p.to_string()),
        "disk_gb" => positive(&text(v)?).map(|n| n.to_string()),
        _ => {
            let t = one_line(text(v)?)?;
            if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b)) {
                bail!("{t:?}: expected a domain name (letters, digits, '.', '-', '_')");
            }
            Ok(t)
        }
    }
}

fn port(p: &str) -> Result<u16> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{p:?}: expected a port number 1-65535"),
    }
}

/// The paths the file names, on disk: each must be inside `repo` after
/// following symlinks (a Procfile in someone's repository is untrusted).
pub fn check_paths(d: &Deployment, repo: &Path, file: &str) -> Result<()> {
    let root = repo.canonicalize().with_context(|| format!("cannot resolve {}", repo.display()))?;
    for (key, p) in [("containerfile", &d.containerfile), ("oci_tarball", &d.oci_tarball)] {
        let Some(p) = p else { continue };
        let line = d.lines[key];
        let real = root
            .join(p)
            .canonicalize()
            .with_context(|| format!("{file}:{line}: {key}: cannot read {p:?} in the repository"))?;
        if !real.starts_with(&root) || !real.is_file() {
            bail!(
                "{file}:{line}: {key}: {p:?} leads to {}, not a file inside the repository {}",
                real.display(),
                root.display()
            );
        }
    }
    Ok(())
}

/// What `render` needs beyond the file: the name and the enclave's boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub name: String,
    pub kernel_image: String,
    pub kernel_path: String,
    /// The kernel's config in its image; `None` when it has none.
    pub kernel_config: Option<String>,
    pub init_image: String,
    pub init_path: String,
    pub cmdline: String,
}

/// The reference an `oci_tarball` image is recorded as (`store import --name`).
pub fn tarball_reference(name: &str) -> String {
    format!("localhost/eifbake-import/{name}:oci-tarball")
}

/// TOML for a string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// The recipe text for `d` (read from `file`, whose sha256 is `sha`), with
/// `containerfile` the one to build when the file names none and no tarball.
pub fn render(d: &Deployment, o: &Options, file: &str, sha: &str, containerfile: &str) -> String {
    let mut r = header(file, sha);
    r += &format!("name = {}\nversion = \"0.1.0\"\nsource_date_epoch = 1700000000\n", q(&o.name));
    match &d.oci_tarball {
        Some(t) => r += &tarball_part(d, o, t),
        None => r += &containerfile_part(d, containerfile),
    }
    r += &format!(
        "\n# The enclave's kernel and init (a {file} has no words for them), as\n\
         # `eifbake import --kernel-image/--init-image` chose them.\n[images]\nkernel = {}\ninit = {}\n",
        q(&o.kernel_image),
        q(&o.init_image)
    );
    if d.oci_tarball.is_some() {
        r += &format!("app = {}\n", q(&tarball_reference(&o.name)));
    }
    r += &binary_step(d);
    if !d.deployment.is_empty() {
        r += &format!(
            "\n# Deployment settings of {file}: kept in the manifest (origin.deployment), never measured.\n[deployment]\n"
        );
        for (k, v) in &d.deployment {
            r += &format!("{k} = {}\n", q(v));
        }
    }
    r + &enclave_part(d, o, file)
}

fn header(file: &str, sha: &str) -> String {
    format!(
        "# An eifbake recipe written by `eifbake import {file}`, from the {file} whose\n\
         # sha256 is {sha}.\n\
         # Review it: this file, not {file}, is what `eifbake lock` pins and `build`\n\
         # builds. Import again (with --force) after editing {file}, or edit this\n\
         # recipe and keep it.\n"
    )
}

fn containerfile_part(d: &Deployment, containerfile: &str) -> String {
    let mut r = format!(
        "\n# Built as Caution does: the Containerfile with the repository root as context.\n\
         containerfile = {}\ncontainerfile_context = \".\"\n",
        q(d.containerfile.as_deref().unwrap_or(containerfile))
    );
    if let Some(b) = &d.binary {
        r += &format!(
            "# binary: only this file of the final stage goes into the enclave.\ncontainerfile_only = [{}]\n",
            q(b)
        );
    }
    r
}

fn tarball_part(d: &Deployment, o: &Options, t: &str) -> String {
    let what = if d.binary.is_some() { "only the binary of it" } else { "its filesystem" };
    format!(
        "\n# oci_tarball = {}: the image `app` below ({what} is the enclave's root). Import it first:\n\
         #   eifbake store import {} --name {}\n\
         #   eifbake lock --offline .\n",
        q(t),
        t,
        tarball_reference(&o.name)
    )
}

/// For a tarball with `binary`: a root step that copies only that file.
fn binary_step(d: &Deployment) -> String {
    match (&d.oci_tarball, &d.binary) {
        (Some(_), Some(b)) => format!(
            "\n# binary: only this file of the image goes into the enclave.\n[[steps]]\nname = \"binary\"\n\
             root = \"scratch\"\ncopy = [{{ from = \"image:app\", src = [{b}], dst = {b} }}]\n\
             outputs = {{ \"/out\" = \"/\" }}\n",
            b = q(b)
        ),
        _ => String::new(),
    }
}

fn enclave_part(d: &Deployment, o: &Options, file: &str) -> String {
    let mut r = String::from("\n[enclave]\n");
    if d.oci_tarball.is_some() && d.binary.is_none() {
        r += "rootfs = \"app\"\n";
    }
    r += &match &o.kernel_config {
        Some(c) => {
            format!("kernel = {{ image = \"kernel\", path = {}, config = {} }}\n", q(&o.kernel_path), q(c))
        }
        None => format!("kernel = {{ image = \"kernel\", path = {} }}\n", q(&o.kernel_path)),
    };
    r += &format!("init = {{ image = \"init\", path = {} }}\ncmdline = {}\n", q(&o.init_path), q(&o.cmdline));
    r += &format!("# run\ncommand = {}\n", list(&d.run));
    r += &format!("# {file}'s memory (MB) and cpus, or Caution's defaults\n");
    r += &format!("cpus = {}\nmemory_mib = {}\n", d.cpus.unwrap_or(2), d.memory_mib.unwrap_or(512));
    r += &format!(
        "# In the manifest (origin), for third parties to rebuild from.\napp_sources = {}\n",
        list(&d.app_sources)
    );
    if !d.enclave_sources.is_empty() {
        r += &format!("enclave_sources = {}\n", list(&d.enclave_sources));
    }
    if let Some(m) = &d.metadata {
        r += &format!("metadata = {}\n", q(m));
    }
    r
}

/// Where the recipe goes and what it is made with.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The Procfile or caution.hcl.
    pub file: PathBuf,
    /// The recipe to write; default `recipe.toml` beside `file`.
    pub out: Option<PathBuf>,
    pub force: bool,
    /// `None`: the name of `file`'s directory.
    pub name: Option<String>,
    pub options: Options,
}

/// `eifbake import`: read, check and render; write the recipe (temporary
/// name and rename); returns its path.
pub fn import(req: &ImportRequest) -> Result<PathBuf> {
    let file = req.file.display().to_string();
    let bytes = std::fs::read(&req.file).with_context(|| format!("cannot read {file}"))?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{file}: not UTF-8"))?;
    let d = parse(text, &file, Format::of(&req.file))?;
    let repo = req.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    check_paths(&d, repo, &file)?;
    let out = output_path(req, repo)?;
    let containerfile = default_containerfile(&d, repo, &file)?;
    let mut options = req.options.clone();
    options.name = recipe_name(req, repo)?;
    let base = req.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let recipe = render(&d, &options, &base, &crate::digest::Digest::of(&bytes).hex(), &containerfile);
    check_rendered(&recipe, repo).with_context(|| format!("{file}: the recipe it makes is not valid"))?;
    crate::fsutil::write_atomic(&out, recipe.as_bytes())?;
    Ok(out)
}

/// Validate the rendered recipe against the real Containerfile.
fn check_rendered(recipe: &str, repo: &Path) -> Result<crate::recipe::Recipe> {
    let file = repo.join("recipe.toml");
    let cf = crate::recipe::Recipe::containerfile_of(recipe, &file)?;
    crate::recipe::Recipe::parse_with(recipe, cf.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
}

fn output_path(req: &ImportRequest, repo: &Path) -> Result<PathBuf> {
    let out = req.out.clone().unwrap_or_else(|| repo.join("recipe.toml"));
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let same = dir.canonicalize().ok() == repo.canonicalize().ok();
    if !same {
        bail!(
            "-o {}: the recipe must sit beside {} (its paths are relative to the repository root)",
            out.display(),
            req.file.display()
        );
    }
    if out.symlink_metadata().is_ok() && !req.force {
        bail!("{} exists; give --force to replace it", out.display());
    }
    Ok(out)
}

/// The Containerfile to build when the file names none: `Containerfile`,
/// else `Dockerfile`, at the repository root (a regular file, no symlink).
fn default_containerfile(d: &Deployment, repo: &Path, file: &str) -> Result<String> {
    if d.containerfile.is_some() || d.oci_tarball.is_some() {
        return Ok(String::new());
    }
    for name in ["Containerfile", "Dockerfile"] {
        if repo.join(name).symlink_metadata().is_ok_and(|m| m.is_file()) {
            return Ok(name.to_string());
        }
    }
    bail!("{file}: containerfile: none given and no Containerfile or Dockerfile at the repository root; name one")
}

fn recipe_name(req: &ImportRequest, repo: &Path) -> Result<String> {
    if let Some(n) = &req.name {
        return Ok(n.clone());
    }
    let dir = repo.canonicalize()?;
    let n = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ok = !n.is_empty()
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.len() <= crate::recipe::NAME_MAX
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("the repository's directory name {n:?} is not a recipe name; give one with --name");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, format: Format) -> String {
        format!("{:#}", parse(text, "Procfile", format).unwrap_err())
    }

    fn perr(text: &str) -> String {
        err(text, Format::Procfile)
    }

    fn options() -> Options {
        Options {
            name: "app".into(),
            kernel_image: "k@sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            kernel_path: "/bzImage".into(),
            kernel_config: Some("/linux.config".into()),
            init_image: "i:1".into(),
            init_path: "/init".into(),
            cmdline: "console=ttyS0".into(),
        }
    }

    const FULL: &str = "# comment\nrun: /app/server --port 8083\ncontainerfile: build/Containerfile\n\
        app_sources: https://codeberg.org/a/b, git://example.org/c.git\nenclave_sources: https://codeberg.org/e/os\n\
        metadata: v1 build\nmemory: 4096\ncpus: 4\ndomain: api.example.com\ne2e: true\nports: 8083, 9000\n\
        http_port: 8083\ndisk_gb: 30\nlocksmith: false\ndebug: false\nno_cache: true\n";

    #[test]
    fn every_field_of_a_procfile() {
        let d = parse(FULL, "Procfile", Format::Procfile).unwrap();
        assert_eq!(d.run, ["/app/server", "--port", "8083"]);
        assert_eq!(d.containerfile.as_deref(), Some("build/Containerfile"));
        assert_eq!(d.app_sources, ["https://codeberg.org/a/b", "git://example.org/c.git"]);
        assert_eq!(d.enclave_sources, ["https://codeberg.org/e/os"]);
        assert_eq!(d.metadata.as_deref(), Some("v1 build"));
        assert_eq!((d.memory_mib, d.cpus), (Some(4096), Some(4)));
        assert_eq!(d.deployment["ports"], "8083,9000");
        assert_eq!(d.deployment.len(), 8);
        assert_eq!(d.lines["cpus"], 8);
    }

    #[test]
    fn caution_hcl_spells_the_same_fields() {
        let hcl = "# caution.hcl\nrun = \"/app/server --port 8083\"\ncontainerfile = \"build/Containerfile\" // c\n\
            app_sources = [\n  \"https://codeberg.org/a/b\",\n  \"git://example.org/c.git\",\n]\n\
            enclave_sources = [\"https://codeberg.org/e/os\"]\nmetadata = \"v1 build\"\nmemory = 4096\ncpus = 4\n\
            domain = \"api.example.com\"\ne2e = true\nports = [\"8083\", \"9000\"]\nhttp_port = 8083\ndisk_gb = 30\n\
            locksmith = false\ndebug = false\nno_cache = true\n";
        let (a, b) = (parse(FULL, "f", Format::Procfile).unwrap(), parse(hcl, "f", Format::Hcl).unwrap());
        assert_eq!((a.run, a.app_sources, a.deployment), (b.run, b.app_sources, b.deployment));
        let d = parse("run = [\"/app/x\", \"a b\"]\n", "f", Format::Hcl).unwrap();
        assert_eq!(d.run, ["/app/x", "a b"], "a list is the argv as given");
        assert_eq!(Format::of(Path::new("x/caution.hcl")), Format::Hcl);
        assert_eq!(Format::of(Path::new("Procfile")), Format::Procfile);
    }

    #[test]
    fn procfile_errors_name_file_line_and_key() {
        let cases = [
            ("run: /a\nnot a field\n", "Procfile:2: \"not a field\" is not `key: value`"),
            ("run: /a\nRun: /b\n", "Procfile:2: \"Run\" is not a field name"),
            ("run: /a\nrun: /b\n", "Procfile:2: run: given twice (also on line 1)"),
            ("run: /a\nregion: us-east-1\n", "Procfile:2: region: unknown field; known: run,"),
            ("containerfile: Containerfile\n", "Procfile: run: missing"),
            ("run: /a\nbuild: make\n", "Procfile:2: build: the legacy build command is not supported"),
            (
                "run: /a\nssh_keys: ssh-ed25519 AAAA\n",
                "Procfile:2: ssh_keys: an EIF eifbake builds has no SSH",
            ),
            ("run: /a\ncontainerfile: C\noci_tarball: t.tar\n", "Procfile:3: oci_tarball: give either"),
            ("run: /a\nbinary: /b\n", "Procfile:1: run: with binary = \"/b\""),
            ("run: /a; rm -rf /\n", "Procfile:1: run: ';': run is split on spaces"),
            ("run: sh -c \"$X\"\n", "Procfile:1: run: '\"'"),
            ("run:\n", "Procfile:1: run: empty value"),
            ("run: /a\nmetadata:\n", "Procfile:2: metadata: empty value"),
            ("run: /a\nmemory: 0\n", "Procfile:2: memory: \"0\": expected a positive whole number"),
            ("run: /a\ncpus: two\n", "Procfile:2: cpus: \"two\": expected a positive"),
            ("run: /a\ne2e: yes\n", "Procfile:2: e2e: \"yes\": expected true or false"),
            ("run: /a\nports: 8083, 70000\n", "Procfile:2: ports: \"70000\": expected a port"),
            ("run: /a\nhttp_port: 0\n", "Procfile:2: http_port: \"0\""),
            ("run: /a\ndomain: a.com; x\n", "Procfile:2: domain: \"a.com; x\": expected a domain"),
        ];
        for (text, want) in cases {
            let e = perr(text);
            assert!(e.contains(want), "{text:?}:\n{e}\nwant {want:?}");
        }
    }

    /// Attack: paths out of the repository or the container, refused when read.
    #[test]
    fn paths_out_of_the_repository_are_refused() {
        for (field, value) in [
            ("containerfile", "../outside/Containerfile"),
            ("containerfile", "/etc/passwd"),
            ("containerfile", "a/../../Containerfile"),
            ("oci_tarball", "../../image.tar"),
            ("oci_tarball", "/tmp/image.tar"),
        ] {
            let e = perr(&format!("run: /a\n{field}: {value}\n"));
            assert!(
                e.contains(&format!("Procfile:2: {field}: {value:?}: expected a file of the repository")),
                "{e}"
            );
        }
        for value in ["app/server", "/app/../../etc/shadow", "/app//x", "/"] {
            let e = perr(&format!("run: {value}\nbinary: {value}\n"));
            assert!(e.contains(&format!("Procfile:2: binary: {value:?}: expected the absolute path")), "{e}");
        }
    }

    /// Attack: source URLs with shell metacharacters or other schemes.
    #[test]
    fn source_urls_are_plain_git_urls() {
        for u in [
            "https://x.org/a;touch /tmp/p",
            "https://x.org/$(id)",
            "https://x.org/`id`",
            "file:///etc/passwd",
            "ext::sh -c id",
            "--upload-pack=touch /tmp/p",
            "https://",
            "http://x.org/a",
            "",
        ] {
            for field in ["app_sources", "enclave_sources"] {
                let e = perr(&format!("run: /a\n{field}: https://ok.org/a, {u}\n"));
                assert!(
                    e.contains(&format!("Procfile:2: {field}: {:?}: expected a git URL", u.trim())),
                    "{u}: {e}"
                );
            }
        }
    }

    #[test]
    fn hcl_errors_name_file_line_and_key() {
        let cases = [
            ("run = \"/a\"\nservice {\n", "Procfile:2: \"service {\": blocks are not supported"),
            ("run = \"/a\"\nmetadata = \"${var.x}\"\n", "Procfile:2: metadata: ${…} interpolation"),
            ("run = \"/a\nx\n", "Procfile:1: run: the string has no closing quote"),
            (
                "run = \"/a\"\napp_sources = [\"https://a.org/b\",\n",
                "Procfile:2: app_sources: the list has no closing ]",
            ),
            ("run = \"/a\"\nmetadata = [\"x\"]\n", "Procfile:2: metadata: expected one value, not a list"),
            ("run = \"/a\"\ncpus = two\n", "Procfile:2: cpus: \"two\": expected a \"string\""),
            ("run = \"/a\"\nports = [8083]\n", "Procfile:2: ports: list items must be \"strings\""),
            ("run = \"/a\" x\n", "Procfile:1: run: \"x\" after the string"),
            ("run = \"/a\\q\"\n", "Procfile:1: run: unsupported escape \\q"),
            ("run = \"/a\"\nrun = \"/b\"\n", "Procfile:2: run: given twice"),
            ("run = \"/a\"\nbuild = \"make\"\n", "Procfile:2: build: the legacy build"),
        ];
        for (text, want) in cases {
            let e = err(text, Format::Hcl);
            assert!(e.contains(want), "{text:?}:\n{e}\nwant {want:?}");
        }
    }

    /// Attack: a symlink in the repository that leads out of it.
    #[test]
    fn symlinks_out_of_the_repository_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, outside) = (tmp.path().join("repo"), tmp.path().join("outside"));
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(repo.join("inside"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink(outside.join("Containerfile"), repo.join("Containerfile")).unwrap();
        std::os::unix::fs::symlink("../outside", repo.join("dir")).unwrap();
        for (field, p) in [("containerfile", "Containerfile"), ("oci_tarball", "dir/Containerfile")] {
            let d = parse(&format!("run: /a\n{field}: {p}\n"), "Procfile", Format::Procfile).unwrap();
            let e = format!("{:#}", check_paths(&d, &repo, "Procfile").unwrap_err());
            assert!(e.contains(&format!("Procfile:2: {field}: {p:?} leads to")), "{e}");
            assert!(e.contains("not a file inside the repository"), "{e}");
        }
        let d = parse("run: /a\ncontainerfile: inside\n", "Procfile", Format::Procfile).unwrap();
        check_paths(&d, &repo, "Procfile").unwrap();
    }

    #[test]
    fn rendered_recipes_are_deterministic_and_valid() {
        let d = parse(FULL, "Procfile", Format::Procfile).unwrap();
        let a = render(&d, &options(), "Procfile", "ab", "Containerfile");
        assert_eq!(a, render(&d, &options(), "Procfile", "ab", "Containerfile"));
        let cf = "FROM scratch\nCOPY x /\nCMD [\"/x\"]\n";
        let r = crate::recipe::Recipe::parse_with(&a, Some((Path::new("build/Containerfile"), cf))).unwrap();
        assert_eq!(r.enclave.command, ["/app/server", "--port", "8083"], "run wins over CMD");
        assert_eq!((r.enclave.memory_mib, r.enclave.cpus), (4096, 4));
        assert_eq!(r.containerfile_context.as_deref(), Some(Path::new(".")));
        assert_eq!(r.sources["context"].path.as_deref(), Some(Path::new(".")));
        assert_eq!(r.enclave.enclave_sources, ["https://codeberg.org/e/os"]);
        assert_eq!(r.enclave.metadata.as_deref(), Some("v1 build"));
        assert_eq!(r.deployment["domain"], "api.example.com");
        // binary with a Containerfile: a last root step copies only it.
        let d = parse("run: /app/x\nbinary: /app/x\n", "Procfile", Format::Procfile).unwrap();
        let text = render(&d, &options(), "Procfile", "ab", "Containerfile");
        let r = crate::recipe::Recipe::parse_with(&text, Some((Path::new("Containerfile"), cf))).unwrap();
        let last = r.steps.last().unwrap();
        assert_eq!((last.name.as_str(), last.root.as_deref()), ("containerfile-only", Some("scratch")));
        assert_eq!(
            (last.copy[0].src.as_slice(), last.copy[0].dst.as_str()),
            (&["/app/x".to_string()][..], "/app/x")
        );
        assert_eq!(last.copy[0].from.as_deref(), Some("step:cf-line2"));
        assert_eq!(last.outputs.get("/out").map(String::as_str), Some("/"));
        // An OCI tarball: the image `app`; with binary, a root step from it.
        let d = parse("run: /app/x\noci_tarball: app.tar\n", "P", Format::Procfile).unwrap();
        let r = crate::recipe::Recipe::parse(&render(&d, &options(), "Procfile", "ab", "")).unwrap();
        assert_eq!(
            (r.enclave.rootfs.as_deref(), r.image_reference("app")),
            (Some("app"), "localhost/eifbake-import/app:oci-tarball")
        );
        let d = parse("run: /app/x\noci_tarball: app.tar\nbinary: /app/x\n", "P", Format::Procfile).unwrap();
        let r = crate::recipe::Recipe::parse(&render(&d, &options(), "Procfile", "ab", "")).unwrap();
        assert_eq!(
            (r.enclave.rootfs.as_deref(), r.steps[0].copy[0].from.as_deref()),
            (None, Some("image:app"))
        );
    }
}
