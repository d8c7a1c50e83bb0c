//! Lowering a parsed [`Containerfile`] into the recipe model: what makes a
//! Containerfile build with the same pipeline, pins and checks as a recipe.
//!
//! - Each `FROM image` becomes an `[images]` entry `cf-lineN` (pinned by
//!   `eifbake lock` like any image); `FROM stage` continues that stage's
//!   root; `FROM scratch` starts from nothing.
//! - The build context (the Containerfile's directory) is the path source
//!   `context`; each `ADD --checksum=… URL` a url source `cf-lineN`.
//! - Instructions that change files become root steps ([`Step::root`]):
//!   `COPY`/`ADD`/`WORKDIR` gather copy operations, and the next `RUN`
//!   closes a step with them and its script (a trailing group of copies is
//!   a step without a script). Each step starts from the stage's root so
//!   far (its image, scratch, or the previous step's output), so a step's
//!   output is exactly the next instruction's input. `RUN --network=none`
//!   is an ordinary (hermetic) step; any other `RUN` a fetch step, pinned
//!   by its output tree.
//! - `ENV`, `ARG` and `USER` give later steps their environment and user;
//!   `ENTRYPOINT` + `CMD` of the final stage become `enclave.command`,
//!   its `ENV` the enclave's environment (the recipe's win), `LABEL`s
//!   `enclave.labels`.
//! - The final stage's root is the enclave's root filesystem: its last
//!   step's whole output (`outputs = { "/out" = "/" }`), or its image;
//!   with `containerfile_only` (a Procfile's `binary`), a last root step
//!   `containerfile-only` from scratch that copies just those paths of it.
//! - The build context is the Containerfile's directory, or the recipe's
//!   `containerfile_context`.
//!
//! Variables (`$X`, `${X}`, `${X:-default}`, `${X:+alt}`) are substituted
//! here, as BuildKit does, in every instruction but `RUN`, `ENTRYPOINT` and
//! `CMD` (their shell does it). Not for: parsing ([`super`]) or running.
//!
//! Invariants: the lowered recipe is validated like any other afterwards;
//! names are `cf-lineN` (unique: one instruction per line), so an error
//! about one names the Containerfile line it came from; the one other name
//! is [`ONLY_STEP`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::{Command, Containerfile, Instruction, Stage};
use crate::recipe::{CopyOp, ImageEntry, Recipe, Source, Step};

/// Variables the sandbox fixes for every step: a Containerfile's `ENV` of
/// one is exported by the script instead (the step's `env` cannot name them).
const FIXED: [&str; 6] = ["HOME", "LANG", "LC_ALL", "PATH", "SOURCE_DATE_EPOCH", "TZ"];

/// Names left out of the build context (as a `.dockerignore` would): the
/// lock and the outputs (a Containerfile at the project root has them in its
/// context, and they change after every lock and build) and `.git`.
pub const CONTEXT_IGNORE: [&str; 3] = [".git", "lockfiles", "out"];

/// Where a stage's root stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    Scratch,
    Image(String),
    Step(String),
}

/// The state of the stage being lowered; a stage built `FROM` an earlier
/// one starts from that one's (its ARGs excepted, as in BuildKit).
#[derive(Debug, Clone)]
struct StageState {
    root: Root,
    /// The stage's image key, if it has one: what its steps run (for the platform).
    image: Option<String>,
    env: BTreeMap<String, String>,
    args: BTreeMap<String, String>,
    workdir: String,
    user: Option<String>,
    pending: Vec<CopyOp>,
    pending_line: u32,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

/// Lower `cf` (at `cf_rel`, relative to the recipe's directory; `file`
/// names it in errors) into `recipe`: its images, sources, steps and
/// enclave root filesystem, command, env and labels.
pub fn lower(recipe: &mut Recipe, cf: &Containerfile, cf_rel: &Path, file: &str) -> Result<()> {
    if recipe.enclave.rootfs.is_some() || !recipe.steps.is_empty() {
        bail!(
            "a recipe with `containerfile` has no enclave.rootfs or [[steps]] of its own: the \
             Containerfile's final stage is the root filesystem"
        );
    }
    let context = match &recipe.containerfile_context {
        Some(c) => c.clone(),
        None => cf_rel.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let context = if context.as_os_str().is_empty() { ".".into() } else { context };
    let mut ctx = path_source(context);
    ctx.ignore = CONTEXT_IGNORE.iter().map(|s| s.to_string()).collect();
    recipe.sources.insert("context".into(), ctx);
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    for (_, name, default) in &cf.global_args {
        if let Some(v) = recipe.build_args.get(name).cloned().or_else(|| default.clone()) {
            global.insert(name.clone(), expand(&v, &global));
        }
    }
    let mut results: Vec<(Option<String>, StageState)> = Vec::new();
    let mut last = None;
    for stage in &cf.stages {
        let at = |line: u32, what: &str, e: anyhow::Error| anyhow::anyhow!("{file}:{line}: {what}: {e:#}");
        let mut st = start_stage(recipe, stage, &global, &results).map_err(|e| at(stage.line, "FROM", e))?;
        for (line, ins) in &stage.instructions {
            lower_one(recipe, &mut st, *line, ins, &global, &results)
                .map_err(|e| at(*line, keyword(ins), e))?;
        }
        flush(recipe, &mut st, None);
        results.push((stage.name.clone(), st.clone()));
        last = Some(st);
    }
    let st = last.expect("parsed: at least one stage");
    finish(recipe, st, file)
}

fn path_source(path: std::path::PathBuf) -> Source {
    Source {
        git: None,
        rev: None,
        path: Some(path),
        ignore: Vec::new(),
        url: None,
        sha256: None,
        unpack: false,
        cargo_lock: None,
        app_source: false,
    }
}

fn keyword(i: &Instruction) -> &'static str {
    match i {
        Instruction::Copy { .. } => "COPY",
        Instruction::Add { .. } => "ADD",
        Instruction::Run { .. } => "RUN",
        Instruction::Env(_) => "ENV",
        Instruction::Arg(..) => "ARG",
        Instruction::Workdir(_) => "WORKDIR",
        Instruction::User { .. } => "USER",
        Instruction::Entrypoint(_) => "ENTRYPOINT",
        Instruction::Cmd(_) => "CMD",
        Instruction::Label(_) => "LABEL",
    }
}

/// The state at a stage's `FROM`: an earlier stage's root, scratch, or a new image.
fn start_stage(
    recipe: &mut Recipe,
    stage: &Stage,
    global: &BTreeMap<String, String>,
    results: &[(Option<String>, StageState)],
) -> Result<StageState> {
    let from = expand(&stage.from, global);
    if from.is_empty() || from.contains(char::is_whitespace) {
        bail!(
            "{:?} expands to {from:?}, not an image: a variable in FROM must be an ARG declared before \
             the first FROM (given a value there or with the recipe's build_args)",
            stage.from
        );
    }
    if let Some((_, earlier)) = results.iter().find(|(n, _)| n.as_deref() == Some(from.as_str())) {
        return Ok(StageState {
            args: BTreeMap::new(),
            pending: Vec::new(),
            pending_line: stage.line,
            ..earlier.clone()
        });
    }
    let (root, image) = if from == "scratch" {
        (Root::Scratch, None)
    } else {
        let key = format!("cf-line{}", stage.line);
        recipe.images.insert(key.clone(), ImageEntry::Reference(from));
        (Root::Image(key.clone()), Some(key))
    };
    Ok(StageState {
        root,
        image,
        env: BTreeMap::new(),
        args: BTreeMap::new(),
        workdir: "/".into(),
        user: None,
        pending: Vec::new(),
        pending_line: stage.line,
        entrypoint: None,
        cmd: None,
    })
}

/// Variables visible to substitution in a stage: its ARGs, then ENVs over them.
fn vars(st: &StageState) -> BTreeMap<String, String> {
    let mut v = st.args.clone();
    v.extend(st.env.clone());
    v
}

fn lower_one(
    recipe: &mut Recipe,
    st: &mut StageState,
    line: u32,
    ins: &Instruction,
    global: &BTreeMap<String, String>,
    results: &[(Option<String>, StageState)],
) -> Result<()> {
    let v = vars(st);
    match ins {
        Instruction::Copy { from, chmod, srcs, dst } => {
            let from = match from {
                None => "source:context".to_string(),
                Some(f) => copy_from(recipe, &expand(f, &v), line, results)?,
            };
            let srcs = srcs.iter().map(|s| expand(s, &v)).collect::<Vec<_>>();
            push_copy(st, line, from, srcs, &expand(dst, &v), *chmod, false)?;
        }
        Instruction::Add { checksum: Some(sum), chmod, srcs, dst } => {
            let url = expand(&srcs[0], &v);
            let name = format!("cf-line{line}");
            let file = crate::sources::url_file_name(&url);
            let mut src = path_source(Default::default());
            (src.path, src.url, src.sha256) = (None, Some(url), Some(*sum));
            recipe.sources.insert(name.clone(), src);
            let dst = expand(dst, &v);
            let dst = if dst.ends_with('/') { format!("{dst}{file}") } else { dst };
            // BuildKit gives a downloaded file mode 0600 unless --chmod says otherwise.
            let mode = Some(chmod.unwrap_or(0o600));
            push_copy(st, line, format!("source:{name}"), vec![file], &dst, mode, false)?;
        }
        Instruction::Add { checksum: None, chmod, srcs, dst } => {
            let srcs = srcs.iter().map(|s| expand(s, &v)).collect::<Vec<_>>();
            push_copy(st, line, "source:context".into(), srcs, &expand(dst, &v), *chmod, true)?;
        }
        Instruction::Run { command, network } => {
            let script = run_script(command, &st.env, &st.args);
            flush(recipe, st, Some((line, script, *network)));
        }
        Instruction::Env(pairs) => {
            for (k, val) in pairs {
                let val = expand(val, &vars(st));
                st.env.insert(k.clone(), val);
            }
        }
        Instruction::Arg(name, default) => {
            let value = recipe
                .build_args
                .get(name)
                .cloned()
                .or_else(|| default.as_ref().map(|d| expand(d, &v)))
                .or_else(|| global.get(name).cloned());
            if let Some(value) = value {
                st.args.insert(name.clone(), value);
            }
        }
        Instruction::Workdir(dir) => {
            let dir = absolute(&st.workdir, &expand(dir, &v));
            st.workdir = dir.clone();
            if st.pending.is_empty() {
                st.pending_line = line;
            }
            st.pending.push(CopyOp { from: None, src: Vec::new(), dst: dir, mode: None, no_archives: false });
        }
        Instruction::User { uid, gid } => st.user = Some(format!("{uid}:{}", gid.unwrap_or(0))),
        Instruction::Entrypoint(c) => {
            st.entrypoint = Some(argv(c));
            st.cmd = None; // as BuildKit: a new ENTRYPOINT resets an inherited CMD
        }
        Instruction::Cmd(c) => st.cmd = Some(argv(c)),
        Instruction::Label(pairs) => {
            for (k, val) in pairs {
                recipe.enclave.labels.insert(expand(k, &v), expand(val, &v));
            }
        }
    }
    Ok(())
}

/// What `COPY --from=NAME` copies from: an earlier stage's root, or an image reference.
fn copy_from(
    recipe: &mut Recipe,
    name: &str,
    line: u32,
    results: &[(Option<String>, StageState)],
) -> Result<String> {
    let by_name = results.iter().find(|(n, _)| n.as_deref() == Some(&name.to_ascii_lowercase()));
    let by_index = name.parse::<usize>().ok().and_then(|i| results.get(i));
    match by_name.or(by_index).map(|(_, st)| &st.root) {
        Some(Root::Scratch) => bail!("--from={name}: that stage is empty (FROM scratch with no files)"),
        Some(Root::Image(k)) => Ok(format!("image:{k}")),
        Some(Root::Step(s)) => Ok(format!("step:{s}")),
        None => {
            let key = format!("cf-line{line}");
            recipe.images.insert(key.clone(), ImageEntry::Reference(name.to_string()));
            Ok(format!("image:{key}"))
        }
    }
}

fn push_copy(
    st: &mut StageState,
    line: u32,
    from: String,
    srcs: Vec<String>,
    dst: &str,
    mode: Option<u32>,
    no_archives: bool,
) -> Result<()> {
    if let Some(w) = srcs.iter().find(|s| s.contains(['*', '?', '['])) {
        bail!("{w:?}: wildcards are not supported; name the files or copy their directory");
    }
    let mut dst = absolute(&st.workdir, dst);
    if (srcs.len() > 1 || dst == "/") && !dst.ends_with('/') {
        dst.push('/');
    }
    if st.pending.is_empty() {
        st.pending_line = line;
    }
    st.pending.push(CopyOp {
        from: Some(from),
        src: srcs,
        dst,
        mode: mode.map(|m| format!("{m:04o}")),
        no_archives,
    });
    Ok(())
}

/// Close the stage's pending copies into a root step, with `run` (line,
/// script, network) when a `RUN` closes them.
fn flush(recipe: &mut Recipe, st: &mut StageState, run: Option<(u32, String, bool)>) {
    if st.pending.is_empty() && run.is_none() {
        return;
    }
    let line = run.as_ref().map_or(st.pending_line, |r| r.0);
    let name = format!("cf-line{line}");
    let root = match &st.root {
        Root::Scratch => "scratch".to_string(),
        Root::Image(_) => "image".to_string(),
        Root::Step(s) => format!("step:{s}"),
    };
    let env = st
        .args
        .iter()
        .chain(st.env.iter())
        .filter(|(k, _)| !FIXED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (script, network) = run.map(|(_, s, n)| (s, n)).unwrap_or_default();
    recipe.steps.push(Step {
        name: name.clone(),
        image: st.image.clone().unwrap_or_default(),
        mounts: BTreeMap::new(),
        workdir: st.workdir.clone(),
        run: script,
        env,
        outputs: BTreeMap::new(),
        network,
        root: Some(root),
        copy: std::mem::take(&mut st.pending),
        user: st.user.clone(),
    });
    st.root = Root::Step(name);
}

/// The script a `RUN` becomes: BuildKit runs the shell form with `/bin/sh
/// -c` (no `-e`, no `-u`), so the sandbox's `-eu` is turned off first;
/// variables the sandbox fixes are exported when the Containerfile sets
/// them; the exec form is quoted and `exec`ed.
fn run_script(c: &Command, env: &BTreeMap<String, String>, args: &BTreeMap<String, String>) -> String {
    let mut s = String::from("set +eu\n");
    for (k, v) in args.iter().chain(env.iter()).filter(|(k, _)| FIXED.contains(&k.as_str())) {
        s.push_str(&format!("export {k}={}\n", quote(v)));
    }
    match c {
        Command::Shell(cmd) => s.push_str(cmd),
        Command::Exec(argv) => {
            s.push_str("exec");
            for a in argv {
                s.push(' ');
                s.push_str(&quote(a));
            }
        }
    }
    s.push('\n');
    s
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn argv(c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

/// The final stage: its root becomes the enclave's, its command and env the enclave's.
fn finish(recipe: &mut Recipe, mut st: StageState, file: &str) -> Result<()> {
    if let Root::Scratch = &st.root {
        bail!("{file}: the final stage is empty (FROM scratch and no COPY or ADD)");
    }
    if !recipe.containerfile_only.is_empty() {
        only(recipe, &mut st);
    }
    match &st.root {
        Root::Scratch => unreachable!("refused above; `only` leaves a step"),
        Root::Image(k) => recipe.enclave.rootfs = Some(k.clone()),
        Root::Step(s) => {
            let step = recipe.steps.iter_mut().find(|x| &x.name == s).expect("a step of this stage");
            step.outputs.insert("/out".into(), "/".into());
        }
    }
    if recipe.enclave.command.is_empty() {
        let mut command = st.entrypoint.clone().unwrap_or_default();
        command.extend(st.cmd.clone().unwrap_or_default());
        if command.is_empty() {
            bail!(
                "{file}: the final stage has no ENTRYPOINT or CMD, and the recipe no enclave.command: \
                 give the program the enclave runs"
            );
        }
        recipe.enclave.command = command;
    }
    for (k, v) in st.env {
        recipe.enclave.env.entry(k).or_insert(v);
    }
    Ok(())
}

/// `containerfile_only`: a last root step, `containerfile-only`, copies
/// just those paths of the final stage's root into an empty root (copies
/// resolve symlinks inside the stage's root, as every copy does), and
/// becomes the final root.
fn only(recipe: &mut Recipe, st: &mut StageState) {
    let from = match &st.root {
        Root::Image(k) => format!("image:{k}"),
        Root::Step(s) => format!("step:{s}"),
        Root::Scratch => unreachable!("the caller refuses an empty final stage"),
    };
    let copy = recipe
        .containerfile_only
        .iter()
        .map(|p| CopyOp {
            from: Some(from.clone()),
            src: vec![p.clone()],
            dst: p.clone(),
            mode: None,
            no_archives: false,
        })
        .collect();
    recipe.steps.push(Step {
        name: ONLY_STEP.into(),
        image: String::new(),
        mounts: BTreeMap::new(),
        workdir: "/".into(),
        run: String::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        network: false,
        root: Some("scratch".into()),
        copy,
        user: None,
    });
    st.root = Root::Step(ONLY_STEP.into());
}

/// The name of the step [`only`] adds (never a `cf-lineN`).
pub const ONLY_STEP: &str = "containerfile-only";

/// `FILE:LINE: ` of the Containerfile instruction an image, source or step
/// named `cf-lineN` was lowered from (the recipe at `recipe_file` names
/// the Containerfile), for errors; empty for any other name.
pub fn origin_of(recipe: &Recipe, recipe_file: &Path, name: &str) -> String {
    match (&recipe.containerfile, name.strip_prefix("cf-line")) {
        (Some(cf), Some(line)) if line.parse::<u32>().is_ok() => {
            format!("{}:{line}: ", Recipe::base_dir(recipe_file).join(cf).display())
        }
        _ => String::new(),
    }
}

/// `path` made absolute against `workdir`, with `.` and empty components
/// dropped and `..` resolved lexically (never above `/`); a trailing `/` kept.
fn absolute(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{workdir}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// BuildKit's variable substitution: `$X`, `${X}`, `${X:-word}`,
/// `${X-word}`, `${X:+word}`, `${X+word}`; `\$` is a literal `$`; an unset
/// variable is empty.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let b: Vec<char> = s.chars().collect();
    let (mut out, mut i) = (String::new(), 0);
    while i < b.len() {
        match b[i] {
            '\\' if b.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if b.get(i + 1) == Some(&'{') => {
                let Some(end) = b[i + 2..].iter().position(|c| *c == '}') else {
                    out.extend(&b[i..]);
                    break;
                };
                let inner: String = b[i + 2..i + 2 + end].iter().collect();
                out.push_str(&braced(&inner, vars));
                i += end + 3;
            }
            '$' if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') => {
                let n = b[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                let name: String = b[i + 1..i + 1 + n].iter().collect();
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                i += n + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn braced(inner: &str, vars: &BTreeMap<String, String>) -> String {
    let n = inner.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
    let (name, op) = inner.split_at(n);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let word = |w: &str| expand(w, vars);
    match op {
        "" => value.cloned().unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                value.cloned().unwrap_or_default()
            } else {
                word(&op[2..])
            }
        }
        _ if op.starts_with('-') => value.cloned().unwrap_or_else(|| word(&op[1..])),
        _ if op.starts_with(":+") => {
            if set_nonempty {
                word(&op[2..])
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if value.is_some() {
                word(&op[1..])
            } else {
                String::new()
            }
        }
        _ => value.cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"
name = "cf"
containerfile = "Containerfile"
[images]
kernel = "k@sha256:0000000000000000000000000000000000000000000000000000000000000000"
[enclave]
kernel = { image = "kernel", path = "/bzImage" }
init = { image = "kernel", path = "/init" }
cmdline = "console=ttyS0"
"#;

    fn lowered(cf: &str, build_args: &[(&str, &str)]) -> Result<Recipe> {
        let mut r: Recipe = toml::from_str(RECIPE).unwrap();
        r.build_args = build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let cf = Containerfile::parse(cf, "Containerfile")?;
        lower(&mut r, &cf, Path::new("Containerfile"), "Containerfile")?;
        Ok(r)
    }

    #[test]
    fn stages_become_root_steps_chained_output_to_input() {
        let r = lowered(
            "ARG BASE=busybox\nFROM ${BASE}@sha256:aa AS build\nENV SOURCE_DATE_EPOCH=1 A=b\nWORKDIR src\n\
             COPY main.c ./\nRUN --network=none cc main.c\nRUN wget x\n\
             FROM scratch\nCOPY --from=build /src/a.out /bin/app\nLABEL v=$X\nENTRYPOINT [\"/bin/app\"]\nCMD [\"-v\"]\n",
            &[("X", "ignored: not declared")],
        )
        .unwrap();
        assert_eq!(r.image_reference("cf-line2"), "busybox@sha256:aa");
        let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cf-line6", "cf-line7", "cf-line9"]);
        let (s6, s7, s9) = (&r.steps[0], &r.steps[1], &r.steps[2]);
        assert_eq!((s6.root.as_deref(), s6.image.as_str(), s6.network), (Some("image"), "cf-line2", false));
        assert_eq!(s6.copy[0].dst, "/src");
        assert_eq!(s6.copy[1].dst, "/src/");
        assert_eq!(s6.copy[1].src, ["main.c"]);
        assert_eq!(s6.workdir, "/src");
        assert!(s6.run.contains("export SOURCE_DATE_EPOCH='1'\n") && s6.run.ends_with("cc main.c\n"));
        assert_eq!(s6.env.get("A").map(String::as_str), Some("b"));
        assert!(!s6.env.contains_key("SOURCE_DATE_EPOCH"));
        assert_eq!((s7.root.as_deref(), s7.network), (Some("step:cf-line6"), true));
        assert_eq!(
            (s9.root.as_deref(), s9.copy[0].from.as_deref()),
            (Some("scratch"), Some("step:cf-line7"))
        );
        assert_eq!(s9.outputs.get("/out").map(String::as_str), Some("/"));
        assert_eq!(r.enclave.command, ["/bin/app", "-v"]);
        assert_eq!(r.enclave.labels.get("v").map(String::as_str), Some(""));
        assert!(r.sources.contains_key("context"));
    }

    #[test]
    fn build_args_add_user_and_image_only_final_stage() {
        let sum = format!("sha256:{}", "c".repeat(64));
        let r = lowered(
            &format!(
                "FROM a@sha256:bb\nARG V=1\nUSER 7\nADD --checksum={sum} https://e.org/f-$V.tar /d/\nRUN [\"/bin/x\", \"it's\"]\nFROM a@sha256:bb\nCMD x\n"
            ),
            &[("V", "2")],
        )
        .unwrap();
        let s = &r.steps[0];
        assert_eq!(s.user.as_deref(), Some("7:0"));
        assert_eq!(s.copy[0].dst, "/d/f-2.tar");
        assert_eq!(s.copy[0].mode.as_deref(), Some("0600"));
        assert_eq!(r.sources["cf-line4"].url.as_deref(), Some("https://e.org/f-2.tar"));
        assert!(s.run.ends_with("exec '/bin/x' 'it'\\''s'\n"), "{}", s.run);
        assert_eq!(r.enclave.rootfs.as_deref(), Some("cf-line6"));
        assert_eq!(r.enclave.command, ["/bin/sh", "-c", "x"]);
    }

    #[test]
    fn refusals_name_the_line() {
        let e = format!("{:#}", lowered("FROM scratch\nCOPY *.c /\nCMD x\n", &[]).unwrap_err());
        assert!(e.contains("Containerfile:2: COPY: \"*.c\": wildcards"), "{e}");
        let e = format!(
            "{:#}",
            lowered("FROM scratch AS e\nFROM scratch\nCOPY --from=e / /\nCMD x\n", &[]).unwrap_err()
        );
        assert!(e.contains("Containerfile:3: COPY: --from=e: that stage is empty"), "{e}");
        let e = format!("{:#}", lowered("FROM $UNDECLARED\nCMD x\n", &[("UNDECLARED", "a")]).unwrap_err());
        assert!(e.contains("Containerfile:1: FROM: \"$UNDECLARED\" expands to \"\""), "{e}");
        let e = format!("{:#}", lowered("FROM a\nRUN x\n", &[]).unwrap_err());
        assert!(e.contains("no ENTRYPOINT or CMD"), "{e}");
    }

    #[test]
    fn a_stage_from_a_stage_inherits_its_env_workdir_user_and_command() {
        let r = lowered(
            "FROM a@sha256:bb AS base\nARG A=1\nENV E=2\nWORKDIR /w\nUSER 5\nCMD [\"c\"]\nRUN x\nFROM base\nRUN echo $A\n",
            &[],
        )
        .unwrap();
        let s = &r.steps[1];
        assert_eq!((s.root.as_deref(), s.image.as_str()), (Some("step:cf-line7"), "cf-line1"));
        assert_eq!(s.env.get("E").map(String::as_str), Some("2"));
        assert!(!s.env.contains_key("A"), "ARGs do not cross stages");
        assert_eq!((s.workdir.as_str(), s.user.as_deref()), ("/w", Some("5:0")));
        assert_eq!(r.enclave.command, ["c"]);
        assert_eq!(r.enclave.env.get("E").map(String::as_str), Some("2"));
    }

    #[test]
    fn substitution() {
        let v: BTreeMap<String, String> =
            [("A".to_string(), "1".to_string()), ("E".to_string(), String::new())].into();
        assert_eq!(expand("$A-${A}-${B:-d}-${E:-x}-${E-y}-${A:+p}-${B:+q}-\\$A-$", &v), "1-1-d-x--p--$A-$");
    }
}
