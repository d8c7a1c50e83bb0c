//! `eifbake verify MANIFEST|REF…`: rebuild and compare, see [`crate::verify`].
//! Exit 0 GOOD (or measured content identical), 1 BAD, 2 could not rebuild.
//!
//! A subject that is a release on a registry ([`crate::release::Subject`]) is
//! pulled (every digest checked) into a scratch directory; its manifest is
//! rebuilt and its EIF and `.pcrs` are compared too (unless `--eif`/`--pcrs`
//! name others). With `--attest --push`, the verification summary is signed
//! and attached to the release ([`crate::release::rebuilds`]); a release
//! that already carries an attestation signed by the same key is skipped,
//! so an interrupted batch resumes where it stopped.
//!
//! One subject: the report as text (or `--json`). Several (or `--jobs`):
//! one JSON line per subject, in the order they finish, and the exit code
//! is the worst: 2 when any could not be verified, else 1 when any is BAD.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::args::{Global, VerifyArgs};
use crate::digest::Digest;
use crate::epoch::Epoch;
use crate::fsutil::write_atomic;
use crate::oci::registry::Registry;
use crate::oci::Reference;
use crate::release::rebuilds::{self, NamedKey};
use crate::release::{self, Subject};
use crate::signing::Signer;
use crate::verify::{attestation, load_subject, verify, Report, Verdict, VerifyOptions};

/// What every subject of one `verify` shares.
struct Shared {
    opts: VerifyOptions,
    registry: Registry,
    attest_file: Option<PathBuf>,
    /// With `--push`: the signer and its public key.
    signer: Option<(Arc<dyn Signer>, NamedKey)>,
    /// Where `--eif REF` and `--pcrs REF` were pulled; removed when done.
    _pulled: tempfile::TempDir,
}

/// The result of one subject.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    subject: String,
    /// The release's manifest digest, for a release.
    release: Option<Digest>,
    /// True when skipped: the release already has this rebuilder's attestation.
    skipped: bool,
    verdict: Option<Verdict>,
    /// The attestation pushed, for `--push`.
    attestation: Option<Digest>,
    error: Option<String>,
    #[serde(skip)]
    report: Option<Report>,
}

pub fn run(args: VerifyArgs, global: &Global) -> Result<ExitCode> {
    let ctx = context(&args, global)?;
    let batch = args.subjects.len() > 1 || args.jobs > 1;
    if batch && (args.pcrs.is_some() || args.eif.is_some()) {
        bail!("--pcrs and --eif name one release's files; give them with one subject only");
    }
    if batch && ctx.attest_file.is_some() {
        bail!(
            "--attest=FILE names one file, but there are {} subjects; use --attest --push",
            args.subjects.len()
        );
    }
    if !batch {
        let o = one(&args.subjects[0], &ctx)?;
        return print_one(&args, &ctx, o);
    }
    let next = AtomicUsize::new(0);
    let worst = Mutex::new(0u8);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(args.subjects.len() as u32) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(subject) = args.subjects.get(i) else { break };
                let o = one(subject, &ctx).unwrap_or_else(|e| Outcome {
                    subject: subject.display().to_string(),
                    release: None,
                    skipped: false,
                    verdict: None,
                    attestation: None,
                    error: Some(format!("{e:#}")),
                    report: None,
                });
                let code = match (&o.error, o.verdict) {
                    (Some(_), _) => 2,
                    (None, Some(Verdict::Bad)) => 1,
                    _ => 0,
                };
                let mut w = worst.lock().expect("no panics while held");
                *w = (*w).max(code);
                let line = serde_json::to_string(&o).expect("an outcome serialises");
                if super::output::line(format_args!("{line}")).is_err() {
                    break;
                }
            });
        }
    });
    let code = *worst.lock().expect("no panics while held");
    Ok(ExitCode::from(code))
}

/// Options, registry and signer from the arguments.
fn context(args: &VerifyArgs, global: &Global) -> Result<Shared> {
    let mut sources = BTreeMap::new();
    for s in &args.sources {
        let Some((name, dir)) = s.split_once('=') else {
            bail!("--source {s:?}: expected NAME=DIR");
        };
        if sources.insert(name.to_string(), PathBuf::from(dir)).is_some() {
            bail!("--source {name}: given twice");
        }
    }
    let opts = VerifyOptions {
        store: global.store.clone(),
        sources,
        pcrs: args.pcrs.clone(),
        published_eif: args.eif.clone(),
        allow_tool_mismatch: args.allow_tool_mismatch,
        runtime: args.runtime,
        insecure: args.insecure_registry.clone(),
        mirrors: global.mirrors()?,
        offline: global.offline,
        step_timeout: Duration::from_secs(args.step_timeout),
        keep: args.keep,
        allow_network: args.allow_network,
    };
    let attest_file = args.attest.clone().flatten();
    if args.attest.is_some() && attest_file.is_none() && !args.push {
        bail!("--attest without FILE needs --push (sign and attach the summary to the release)");
    }
    let signer = match (args.push, &args.key, &args.cert) {
        (true, Some(key), Some(cert)) => {
            let key_str = key.to_str().with_context(|| format!("--key {}: not UTF-8", key.display()))?;
            let s = crate::signing::load_signer(cert, key_str, crate::signing::Validity::Enforce)?;
            let named = NamedKey::load(cert)?;
            Some((s, named))
        }
        _ => None,
    };
    // Releases come from the registry their reference names; mirrors serve the rebuild's images.
    let registry = Registry::new(&args.insecure_registry);
    // `--eif` and `--pcrs` may name releases too: their EIF and .pcrs.
    let pulled = tempfile::Builder::new().prefix("eifbake-published-").tempdir()?;
    let mut opts = opts;
    if let Some(e) = &opts.published_eif {
        opts.published_eif = Some(release::local_eif(&registry, e, &pulled.path().join("eif"))?);
    }
    if let Some(p) = &opts.pcrs {
        opts.pcrs = Some(release::local_file(&registry, p, &pulled.path().join("pcrs"), |f| &f.pcrs)?);
    }
    Ok(Shared { opts, registry, attest_file, signer, _pulled: pulled })
}

/// Verify one subject (a file, or a release: skipped when already attested by us).
fn one(arg: &Path, ctx: &Shared) -> Result<Outcome> {
    let text = arg.to_str().with_context(|| format!("{}: not UTF-8", arg.display()))?;
    let mut o = Outcome {
        subject: text.to_string(),
        release: None,
        skipped: false,
        verdict: None,
        attestation: None,
        error: None,
        report: None,
    };
    let reference = match Subject::parse(text)? {
        Subject::File(path) => {
            if ctx.signer.is_some() {
                bail!(
                    "{text}: --push attaches the summary to a release; give a registry reference, not a file"
                );
            }
            let subject = load_subject(&path)?;
            let report = verify(&subject, &ctx.opts)?;
            write_attestation(ctx, &attestation(&subject, &report, now()?))?;
            o.verdict = Some(report.verdict);
            o.report = Some(report);
            return Ok(o);
        }
        Subject::Release(r) => r,
    };
    let published = release::resolve(&ctx.registry, &reference)?;
    o.release = Some(published.digest);
    if let Some((_, key)) = &ctx.signer {
        if rebuilds::attested_by(&ctx.registry, &reference, &published, key)? {
            o.skipped = true;
            return Ok(o);
        }
    }
    let (report, statement) = verify_release(ctx, &reference, &published)?;
    o.verdict = Some(report.verdict);
    if let Some((signer, _)) = &ctx.signer {
        let (d, _) = rebuilds::attach(&ctx.registry, &reference, &published, &statement, signer.as_ref())?;
        o.attestation = Some(d);
    }
    o.report = Some(report);
    Ok(o)
}

/// Pull the release (by the digest resolved) and verify its manifest
/// against its own EIF and `.pcrs` (or those given); the summary names the release.
fn verify_release(
    ctx: &Shared,
    reference: &Reference,
    published: &release::Published,
) -> Result<(Report, serde_json::Value)> {
    let scratch = tempfile::Builder::new().prefix("eifbake-release-").tempdir()?;
    let pinned = rebuilds::pinned(reference, &published.digest)?;
    let (_, files) = release::pull(&ctx.registry, &pinned, scratch.path())?;
    let mut opts = ctx.opts.clone();
    opts.pcrs = opts.pcrs.or(Some(files.pcrs.clone()));
    opts.published_eif = opts.published_eif.or(Some(files.eif.clone()));
    let subject = load_subject(&files.manifest)?;
    let report = verify(&subject, &opts)?;
    let mut st = attestation(&subject, &report, now()?);
    st["predicate"]["resourceUri"] = format!("oci://{pinned}").into();
    write_attestation(ctx, &st)?;
    Ok((report, st))
}

/// `timeVerified`: SOURCE_DATE_EPOCH when set, else the clock.
fn now() -> Result<Epoch> {
    Ok(match Epoch::from_env()? {
        Some(e) => e,
        None => Epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
    })
}

fn write_attestation(ctx: &Shared, st: &serde_json::Value) -> Result<()> {
    if let Some(path) = &ctx.attest_file {
        let mut bytes = serde_json::to_vec_pretty(st)?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)?;
    }
    Ok(())
}

/// One subject's report, as text or JSON; exit by its verdict.
fn print_one(args: &VerifyArgs, ctx: &Shared, o: Outcome) -> Result<ExitCode> {
    let Some(report) = &o.report else {
        // Skipped: already attested by this rebuilder.
        if args.json {
            super::output::json(&o)?;
        } else {
            outln!("skipped {}: it already carries an attestation signed by this key", o.subject);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if args.json {
        super::output::json(report)?;
    } else {
        outln!("{} {}", report.verdict.word(), report.name);
        outln!("{:<8} {:<14} {:<8} {:<8}", "figure", "from", "match", "expected / rebuilt");
        for f in &report.figures {
            outln!("{:<8} {:<14} {:<8} {}", f.what, f.from, if f.ok { "yes" } else { "NO" }, f.expected);
            outln!("{:<8} {:<14} {:<8} {}", "", "", "", f.rebuilt);
        }
        for n in &report.notes {
            outln!("note: {n}");
        }
        if let Some(d) = &report.diff {
            outln!("difference between the rebuild (---) and the published EIF (+++):");
            crate::commands::diff::print_text(d)?;
        }
        if let Some(k) = &report.kept {
            outln!("kept the rebuild in {}", k.display());
        }
        if let Some(a) = &ctx.attest_file {
            outln!("wrote {}", a.display());
        }
        if let (Some(a), Some(r)) = (&o.attestation, &o.release) {
            outln!("attached the signed summary {a} to {r}");
        }
    }
    Ok(match report.verdict {
        Verdict::Good | Verdict::GoodMeasured => ExitCode::SUCCESS,
        Verdict::Bad => ExitCode::from(1),
    })
}
