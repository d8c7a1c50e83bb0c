//! Containerfiles (Dockerfiles): the subset StageX- and QuorumOS-style
//! builds use, parsed into [`Containerfile`] and lowered ([`lower`]) into
//! the recipe model, so a Containerfile gets every guarantee of a recipe
//! (images pinned in the lock, sources hashed, steps in the sandbox with no
//! network, fetch steps pinned by their output) from the same pipeline.
//!
//! What this module is for: reading the text (logical lines, continuations,
//! comments, parser directives, flags, exec and shell forms) and refusing,
//! with `FILE:LINE: INSTRUCTION:`, everything outside the subset:
//!
//! - `FROM ref[@digest] [AS name]`, `FROM scratch`;
//! - `COPY [--from=stage] [--chmod=MODE] src… dst`;
//! - `ADD --checksum=sha256:… URL dst` and local `ADD [--chmod=MODE] src… dst`;
//! - `RUN [--network=none|default] cmd` (shell form, or exec form `["a", "b"]`);
//! - `ENV`, `ARG` (before the first `FROM` too), `WORKDIR`, `USER uid[:gid]`
//!   (numeric), `ENTRYPOINT`, `CMD`, `LABEL`;
//! - parser directives `syntax`, `check` (ignored: they choose a BuildKit
//!   frontend or its linting) and `escape=\` (the default; another escape
//!   character is refused).
//!
//! Not for: variable substitution and stage resolution, which need the
//! build arguments and happen when lowering ([`lower`]); running anything.
//!
//! Invariants: a parsed [`Containerfile`] has at least one stage; every
//! stage name is unique; every instruction carries the line it starts on;
//! nothing here reads a file other than the Containerfile itself.

pub mod lower;

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::digest::Digest;

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    /// `ARG`s before the first `FROM`: usable in `FROM` lines only (and
    /// again in a stage that declares them without a value).
    pub global_args: Vec<(u32, String, Option<String>)>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub line: u32,
    /// The reference as written (`scratch`, `busybox@sha256:…`), before substitution.
    pub from: String,
    /// `AS name`, lowercased as BuildKit does.
    pub name: Option<String>,
    pub instructions: Vec<(u32, Instruction)>,
}

/// A command, as `RUN`, `ENTRYPOINT` and `CMD` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: run with `/bin/sh -c`.
    Shell(String),
    /// Exec form: a JSON array of strings.
    Exec(Vec<String>),
}

/// One supported instruction (other than `FROM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Copy {
        from: Option<String>,
        chmod: Option<u32>,
        srcs: Vec<String>,
        dst: String,
    },
    Add {
        checksum: Option<Digest>,
        chmod: Option<u32>,
        srcs: Vec<String>,
        dst: String,
    },
    /// `network`: `false` for `--network=none` (a hermetic step); `true`
    /// otherwise (a fetch step, pinned by its output).
    Run {
        command: Command,
        network: bool,
    },
    Env(Vec<(String, String)>),
    Arg(String, Option<String>),
    Workdir(String),
    User {
        uid: u32,
        gid: Option<u32>,
    },
    Entrypoint(Command),
    Cmd(Command),
    Label(Vec<(String, String)>),
}

impl Containerfile {
    /// Read and parse the Containerfile at `path`.
    pub fn load(path: &Path) -> Result<Containerfile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read Containerfile {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Containerfile> {
        let mut cf = Containerfile { global_args: Vec::new(), stages: Vec::new() };
        for (line, logical) in logical_lines(text, file)? {
            let (word, rest) = split_word(&logical);
            let keyword = word.to_ascii_uppercase();
            let at = |e: anyhow::Error| anyhow::anyhow!("{file}:{line}: {keyword}: {e:#}");
            if keyword == "FROM" {
                let stage = parse_from(line, rest).map_err(at)?;
                if let Some(n) = &stage.name {
                    if cf.stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                        return Err(at(anyhow::anyhow!(
                            "a stage named {n:?} is already defined; rename one"
                        )));
                    }
                }
                cf.stages.push(stage);
                continue;
            }
            let instruction = parse_instruction(&keyword, rest).map_err(at)?;
            match (cf.stages.last_mut(), instruction) {
                (Some(stage), i) => stage.instructions.push((line, i)),
                (None, Instruction::Arg(name, value)) => cf.global_args.push((line, name, value)),
                (None, _) => {
                    return Err(at(anyhow::anyhow!("comes before the first FROM; only ARG may")));
                }
            }
        }
        if cf.stages.is_empty() {
            bail!("{file}: no FROM instruction: a Containerfile needs at least one stage");
        }
        Ok(cf)
    }
}

/// The logical lines of `text` with the line each starts on: parser
/// directives read (and checked) at the top, comments and empty lines
/// dropped, `\` continuations joined (comment lines inside one are dropped,
/// as BuildKit does).
fn logical_lines(text: &str, file: &str) -> Result<Vec<(u32, String)>> {
    let mut out = Vec::new();
    let mut current: Option<(u32, String)> = None;
    let mut directives = true;
    for (i, raw) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let trimmed = raw.trim_start();
        if directives {
            if let Some(d) = trimmed.strip_prefix('#').and_then(directive) {
                check_directive(d, file, n)?;
                continue;
            }
            directives = false;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_some()) {
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        let (body, continues) = match raw.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        match &mut current {
            Some((_, s)) => s.push_str(body),
            None => current = Some((n, body.trim_start().to_string())),
        }
        if !continues {
            out.extend(current.take());
        }
    }
    if let Some((n, _)) = current {
        bail!("{file}:{n}: the instruction ends with a line continuation (\\) and nothing after it");
    }
    Ok(out)
}

/// `name=value` of a parser directive line (after its `#`), if it is one.
fn directive(s: &str) -> Option<(String, String)> {
    let (k, v) = s.trim().split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| (k.to_ascii_lowercase(), v.trim().to_string()))
}

fn check_directive((k, v): (String, String), file: &str, n: u32) -> Result<()> {
    match k.as_str() {
        "syntax" | "check" => Ok(()),
        "escape" if v == "\\" => Ok(()),
        "escape" => bail!(
            "{file}:{n}: parser directive escape={v}: only the default escape character \\ is supported; \
             remove the directive and write continuations with \\"
        ),
        _ => Ok(()), // BuildKit treats unknown directives as comments
    }
}

/// The first whitespace-separated word and the rest (trimmed at the start).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Leading `--name=value` flags of an instruction, and what follows them.
fn flags(mut rest: &str) -> (Vec<(String, String)>, &str) {
    let mut out = Vec::new();
    loop {
        let (word, after) = split_word(rest);
        let Some(flag) = word.strip_prefix("--") else { return (out, rest) };
        let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
        out.push((k.to_string(), v.to_string()));
        rest = after;
    }
}

fn no_flags(flags: &[(String, String)]) -> Result<()> {
    match flags.first() {
        Some((k, _)) => bail!("flag --{k} is not supported"),
        None => Ok(()),
    }
}

fn parse_from(line: u32, rest: &str) -> Result<Stage> {
    let (fl, rest) = flags(rest);
    if let Some((k, _)) = fl.first() {
        bail!(
            "flag --{k} is not supported: the recipe's arch chooses the platform of every image \
             (arch = \"x86_64\" or \"aarch64\")"
        );
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (from, name) = match words.as_slice() {
        [r] => (r.to_string(), None),
        [r, as_, n] if as_.eq_ignore_ascii_case("as") => {
            let n = n.to_ascii_lowercase();
            if !n.starts_with(|c: char| c.is_ascii_alphabetic())
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || n.len() > 64
            {
                bail!("stage name {n:?}: expected a letter, then letters, digits, '.', '_' or '-'");
            }
            (r.to_string(), Some(n))
        }
        _ => bail!("expected `FROM image[@sha256:…] [AS name]` or `FROM scratch`"),
    };
    Ok(Stage { line, from, name, instructions: Vec::new() })
}

fn parse_instruction(keyword: &str, rest: &str) -> Result<Instruction> {
    let (fl, args) = flags(rest);
    let unsupported = |why: &str| -> Result<Instruction> { bail!("not supported by eifbake: {why}") };
    match keyword {
        "COPY" | "ADD" => parse_copy(keyword, &fl, args),
        "RUN" => parse_run(&fl, args),
        "ENV" => no_flags(&fl).and_then(|_| pairs(args, true)).map(Instruction::Env),
        "LABEL" => no_flags(&fl).and_then(|_| pairs(args, false)).map(Instruction::Label),
        "ARG" => {
            no_flags(&fl)?;
            let words = words(args)?;
            let [w] = words.as_slice() else { bail!("expected `ARG name[=default]`, one per line") };
            match w.split_once('=') {
                Some((k, v)) => Ok(Instruction::Arg(var_name(k)?, Some(v.to_string()))),
                None => Ok(Instruction::Arg(var_name(w)?, None)),
            }
        }
        "WORKDIR" => {
            no_flags(&fl)?;
            if args.is_empty() {
                bail!("expected a directory");
            }
            Ok(Instruction::Workdir(args.trim().to_string()))
        }
        "USER" => no_flags(&fl).and_then(|_| parse_user(args)),
        "ENTRYPOINT" => no_flags(&fl).and_then(|_| command(args)).map(Instruction::Entrypoint),
        "CMD" => no_flags(&fl).and_then(|_| command(args)).map(Instruction::Cmd),
        "EXPOSE" => unsupported(
            "an enclave has no network ports to publish; list vsock ports in the recipe's enclave.ports",
        ),
        "VOLUME" => unsupported("an enclave has no volumes"),
        "HEALTHCHECK" | "STOPSIGNAL" | "ONBUILD" | "SHELL" | "MAINTAINER" => unsupported(
            "only FROM, COPY, ADD, RUN, ENV, ARG, WORKDIR, USER, ENTRYPOINT, CMD and LABEL are; remove it",
        ),
        _ => bail!(
            "unknown instruction; eifbake supports FROM, COPY, ADD, RUN, ENV, ARG, WORKDIR, USER, \
             ENTRYPOINT, CMD and LABEL"
        ),
    }
}

fn parse_copy(keyword: &str, fl: &[(String, String)], args: &str) -> Result<Instruction> {
    let (mut from, mut chmod, mut checksum) = (None, None, None);
    for (k, v) in fl {
        match (k.as_str(), keyword) {
            ("from", "COPY") if !v.is_empty() => from = Some(v.to_string()),
            ("chmod", _) => match u32::from_str_radix(v, 8) {
                Ok(m) if m <= 0o7777 && !v.is_empty() => chmod = Some(m),
                _ => bail!(
                    "--chmod={v}: expected an octal mode such as 0755 (symbolic modes are not supported)"
                ),
            },
            ("checksum", "ADD") => {
                let d: Digest = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--checksum={v}: expected sha256:<64 hex digits>"))?;
                checksum = Some(d);
            }
            ("chown", _) => bail!(
                "flag --chown is not supported: every file of the enclave belongs to root (uid 0, gid 0)"
            ),
            _ => bail!("flag --{k} is not supported"),
        }
    }
    let mut all = if args.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(args.trim())
            .map_err(|e| anyhow::anyhow!("exec-form arguments are not a JSON array of strings: {e}"))?
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    if all.iter().any(|a| a.starts_with("<<")) {
        bail!("heredocs are not supported; put the file in the build context and COPY it");
    }
    if all.len() < 2 {
        bail!("expected at least one source and a destination");
    }
    let dst = all.pop().expect("two or more");
    if keyword == "COPY" {
        return Ok(Instruction::Copy { from, chmod, srcs: all, dst });
    }
    let remote = all.iter().filter(|s| s.contains("://")).count();
    if remote > 0 && (remote != 1 || all.len() != 1) {
        bail!("a URL must be ADD's only source");
    }
    match (remote, checksum) {
        (1, None) => bail!(
            "ADD of a URL needs --checksum=sha256:… so the download is pinned (eifbake refuses unpinned inputs)"
        ),
        (0, Some(_)) => bail!("--checksum applies to a URL source only"),
        _ => {}
    }
    if remote == 1 && !(all[0].starts_with("https://") || all[0].starts_with("http://")) {
        bail!("{}: only http:// and https:// URLs (git sources belong in the recipe)", all[0]);
    }
    Ok(Instruction::Add { checksum, chmod, srcs: all, dst })
}

fn parse_run(fl: &[(String, String)], args: &str) -> Result<Instruction> {
    let mut network = true;
    for (k, v) in fl {
        match (k.as_str(), v.as_str()) {
            ("network", "none") => network = false,
            ("network", "default") => network = true,
            ("network", _) => bail!("--network={v}: only none (a hermetic step) or default (a fetch step)"),
            ("mount", _) => {
                bail!("flag --mount is not supported: mount a source with a recipe step, or COPY it")
            }
            _ => bail!("flag --{k} is not supported"),
        }
    }
    if args.trim().is_empty() {
        bail!("expected a command");
    }
    let command = command(args)?;
    if let Command::Shell(s) = &command {
        if heredoc(s) {
            bail!("heredocs (<<WORD) are not supported; put the script in the build context and COPY it");
        }
    }
    Ok(Instruction::Run { command, network })
}

/// Whether a shell-form `RUN` holds a BuildKit heredoc (`<<EOF`, `<<-"EOF"`).
fn heredoc(s: &str) -> bool {
    s.match_indices("<<").any(|(i, _)| {
        let after = s[i + 2..].trim_start_matches('-').trim_start_matches(['"', '\'']);
        after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    })
}

/// Exec form when the arguments are a JSON array of strings, else shell form (as BuildKit).
fn command(args: &str) -> Result<Command> {
    let t = args.trim();
    if t.is_empty() {
        bail!("expected a command");
    }
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Ok(Command::Exec(v));
        }
    }
    Ok(Command::Shell(t.to_string()))
}

fn parse_user(args: &str) -> Result<Instruction> {
    let (u, g) = match args.trim().split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (args.trim(), None),
    };
    let num = |s: &str| -> Result<u32> {
        s.parse::<u32>().map_err(|_| {
            anyhow::anyhow!(
                "{s:?}: only numeric ids are supported (USER 1000 or USER 1000:1000): no passwd is read"
            )
        })
    };
    Ok(Instruction::User { uid: num(u)?, gid: g.map(num).transpose()? })
}

fn var_name(k: &str) -> Result<String> {
    if k.is_empty()
        || k.starts_with(|c: char| c.is_ascii_digit())
        || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("{k:?}: expected a variable name (letters, digits, _)");
    }
    Ok(k.to_string())
}

/// `k=v …` pairs (values may be quoted), or, for ENV, the legacy `ENV k v…`.
fn pairs(args: &str, legacy: bool) -> Result<Vec<(String, String)>> {
    let ws = words(args)?;
    if ws.is_empty() {
        bail!("expected name=value");
    }
    if legacy && !ws[0].contains('=') {
        let (k, v) = split_word(args.trim());
        if v.is_empty() {
            bail!("expected `ENV name=value` (or `ENV name value`)");
        }
        return Ok(vec![(var_name(k)?, v.to_string())]);
    }
    ws.iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if legacy => Ok((var_name(k)?, v.to_string())),
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{w:?}: expected name=value"),
        })
        .collect()
}

/// Whitespace-separated words with `"…"` and `'…'` quoting and `\`
/// escapes removed, as BuildKit reads ENV, LABEL and ARG.
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let (mut cur, mut in_word, mut quote) = (String::new(), false, None::<char>);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', q) if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                in_word = true;
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (c, _) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unterminated quote");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let cf = Containerfile::parse(&format!("FROM scratch\n{text}\n"), "Containerfile").unwrap();
        assert_eq!(cf.stages[0].instructions.len(), 1, "{text}");
        cf.stages[0].instructions[0].1.clone()
    }

    fn refused(text: &str) -> String {
        format!("{:#}", Containerfile::parse(text, "ctx/Containerfile").unwrap_err())
    }

    #[test]
    fn from_with_digest_name_and_scratch() {
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        let cf = Containerfile::parse(&format!("FROM {d} AS Build\nFROM scratch\n"), "C").unwrap();
        assert_eq!(cf.stages[0].from, d);
        assert_eq!(cf.stages[0].name.as_deref(), Some("build"));
        assert_eq!((cf.stages[1].from.as_str(), cf.stages[1].line), ("scratch", 2));
        assert!(refused("FROM a AS x\nFROM b AS X\n").contains(":2: FROM: a stage named \"x\""));
        assert!(
            refused("FROM --platform=linux/arm64 a\n").contains("ctx/Containerfile:1: FROM: flag --platform")
        );
        assert!(refused("FROM a b\n").contains(":1: FROM: expected"));
        assert!(refused("# a comment\n").contains("no FROM"));
    }

    #[test]
    fn copy_and_its_flags() {
        assert_eq!(
            one("COPY --from=build --chmod=0755 a b /dst/"),
            Instruction::Copy {
                from: Some("build".into()),
                chmod: Some(0o755),
                srcs: vec!["a".into(), "b".into()],
                dst: "/dst/".into()
            }
        );
        assert_eq!(
            one(r#"COPY ["a b", "/d"]"#),
            Instruction::Copy { from: None, chmod: None, srcs: vec!["a b".into()], dst: "/d".into() }
        );
        assert!(refused("FROM x\nCOPY --chown=1:1 a /b\n").contains(":2: COPY: flag --chown"));
        assert!(refused("FROM x\nCOPY --link a /b\n").contains(":2: COPY: flag --link"));
        assert!(refused("FROM x\nCOPY --chmod=u+x a /b\n").contains("octal"));
        assert!(refused("FROM x\nCOPY a\n").contains("at least one source"));
        assert!(refused("FROM x\nCOPY <<EOF /a\n").contains("heredocs"));
    }

    #[test]
    fn add_url_with_checksum_and_local() {
        let sum = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            one(&format!("ADD --checksum={sum} https://example.org/x.tar /x.tar")),
            Instruction::Add {
                checksum: Some(sum.parse().unwrap()),
                chmod: None,
                srcs: vec!["https://example.org/x.tar".into()],
                dst: "/x.tar".into()
            }
        );
        assert!(matches!(one("ADD a /a"), Instruction::Add { checksum: None, .. }));
        assert!(
            refused("FROM x\nADD https://e.org/a /a\n").contains(":2: ADD: ADD of a URL needs --checksum")
        );
        assert!(refused("FROM x\nADD --checksum=md5:1 https://e.org/a /a\n").contains("sha256:<64"));
        assert!(refused(&format!("FROM x\nADD --checksum={sum} a /a\n")).contains("URL source only"));
        assert!(refused("FROM x\nADD --checksum=x git://e.org/a /a\n").contains(":2: ADD:"));
        assert!(refused("FROM x\nADD --from=a b /c\n").contains("flag --from"));
    }

    #[test]
    fn run_forms_and_network() {
        assert_eq!(
            one("RUN --network=none make \\\n  # comment inside\n  install"),
            Instruction::Run { command: Command::Shell("make   install".into()), network: false }
        );
        assert_eq!(
            one(r#"RUN ["/bin/echo", "hi"]"#),
            Instruction::Run { command: Command::Exec(vec!["/bin/echo".into(), "hi".into()]), network: true }
        );
        // Not JSON: shell form, as BuildKit does.
        assert_eq!(
            one("RUN [ -e /x ] || true"),
            Instruction::Run { command: Command::Shell("[ -e /x ] || true".into()), network: true }
        );
        assert!(refused("FROM x\nRUN --mount=type=cache,target=/c make\n").contains(":2: RUN: flag --mount"));
        assert!(refused("FROM x\nRUN --network=host make\n").contains("--network=host"));
        assert!(refused("FROM x\nRUN <<EOF\necho\nEOF\n").contains(":2: RUN: heredocs"));
        assert!(refused("FROM x\nRUN\n").contains("expected a command"));
        assert!(refused("FROM x\nRUN a \\\n").contains(":2: the instruction ends with a line continuation"));
    }

    #[test]
    fn env_arg_label() {
        assert_eq!(
            one(r#"ENV A=1 B="two words" C=a\ b"#),
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "a b".into())
            ])
        );
        assert_eq!(one("ENV PATH /a:/b c"), Instruction::Env(vec![("PATH".into(), "/a:/b c".into())]));
        assert_eq!(one("ARG V=3"), Instruction::Arg("V".into(), Some("3".into())));
        assert_eq!(one("ARG V"), Instruction::Arg("V".into(), None));
        assert_eq!(
            one(r#"LABEL org.opencontainers.image.title="x y" a=b"#),
            Instruction::Label(vec![
                ("org.opencontainers.image.title".into(), "x y".into()),
                ("a".into(), "b".into())
            ])
        );
        let cf = Containerfile::parse("ARG TAG=1\nFROM a:${TAG}\n", "C").unwrap();
        assert_eq!(cf.global_args, vec![(1, "TAG".into(), Some("1".into()))]);
        assert!(refused("ENV A=1\nFROM a\n").contains(":1: ENV: comes before the first FROM"));
        assert!(refused("FROM a\nENV 1A=1\n").contains("variable name"));
        assert!(refused("FROM a\nENV A=\"1\n").contains("unterminated quote"));
        assert!(refused("FROM a\nARG A B\n").contains("one per line"));
    }

    #[test]
    fn workdir_user_entrypoint_cmd() {
        assert_eq!(one("WORKDIR /src"), Instruction::Workdir("/src".into()));
        assert_eq!(one("USER 1000"), Instruction::User { uid: 1000, gid: None });
        assert_eq!(one("USER 1000:100"), Instruction::User { uid: 1000, gid: Some(100) });
        assert!(refused("FROM a\nUSER nobody\n").contains(":2: USER: \"nobody\": only numeric ids"));
        assert_eq!(
            one(r#"ENTRYPOINT ["/bin/app", "-v"]"#),
            Instruction::Entrypoint(Command::Exec(vec!["/bin/app".into(), "-v".into()]))
        );
        assert_eq!(one("CMD echo hi"), Instruction::Cmd(Command::Shell("echo hi".into())));
    }

    #[test]
    fn unsupported_instructions_name_file_line_and_instruction() {
        for (text, want) in [
            ("EXPOSE 80", "ctx/Containerfile:3: EXPOSE: not supported"),
            ("VOLUME /data", "ctx/Containerfile:3: VOLUME: not supported"),
            ("HEALTHCHECK NONE", "ctx/Containerfile:3: HEALTHCHECK: not supported"),
            ("SHELL [\"/bin/bash\", \"-c\"]", "ctx/Containerfile:3: SHELL: not supported"),
            ("onbuild RUN x", "ctx/Containerfile:3: ONBUILD: not supported"),
            ("FROB x", "ctx/Containerfile:3: FROB: unknown instruction"),
        ] {
            let e = refused(&format!("FROM a\n\n{text}\n"));
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn parser_directives() {
        let cf = Containerfile::parse("# syntax=docker/dockerfile:1\n# escape=\\\nFROM a\n", "C").unwrap();
        assert_eq!(cf.stages[0].line, 3);
        assert!(refused("# escape=`\nFROM a\n").contains(":1: parser directive escape=`"));
        // After the first instruction a directive is a comment.
        Containerfile::parse("FROM a\n# escape=`\n", "C").unwrap();
    }
}
