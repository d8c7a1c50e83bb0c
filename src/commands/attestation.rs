//! `eifbake attestation verify DOC (RELEASE | --manifest M | --pcrs F)`:
//! check an enclave's attestation document, see [`crate::attestation`]. A
//! release on a registry (as RELEASE, or in place of M or F) is pulled and
//! verified first ([`crate::release::local_file`]).
//! Exit 0 GOOD (or UNAUTHENTICATED with --insecure-unsigned), 1 BAD,
//! 2 unreadable document, manifest, .pcrs file, nonce or time.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::args::{AttestationCommand, AttestationVerifyArgs};
use crate::attestation::{self, Policy, Report, TrustAnchor, Verdict};
use crate::epoch::Epoch;
use crate::release::{ReleaseFiles, Subject};

pub fn run(cmd: AttestationCommand) -> Result<ExitCode> {
    match cmd {
        AttestationCommand::Verify(a) => verify(a),
    }
}

fn verify(args: AttestationVerifyArgs) -> Result<ExitCode> {
    let registry = crate::oci::registry::Registry::new(&args.insecure_registry);
    let scratch = tempfile::Builder::new().prefix("eifbake-attestation-").tempdir()?;
    let pulled = |arg: &std::path::Path, pick: fn(&ReleaseFiles) -> &PathBuf| {
        crate::release::local_file(&registry, arg, scratch.path(), pick)
    };
    let expected = match (&args.release, &args.manifest, &args.pcrs) {
        (Some(r), _, _) => {
            let text = r.to_str().unwrap_or_default();
            if !matches!(Subject::parse(text)?, Subject::Release(_)) {
                bail!(
                    "{}: not a release on a registry (REGISTRY/REPO:TAG); for a file give --manifest or --pcrs",
                    r.display()
                );
            }
            attestation::expected_from_manifest(&pulled(r, |f| &f.manifest)?)?
        }
        (None, Some(m), _) => attestation::expected_from_manifest(&pulled(m, |f| &f.manifest)?)?,
        (None, None, Some(p)) => attestation::expected_from_pcrs_file(&pulled(p, |f| &f.pcrs)?)?,
        (None, None, None) => unreachable!("clap requires RELEASE, --manifest or --pcrs"),
    };
    let nonce = match &args.nonce {
        Some(h) => Some(hex::decode(h.trim()).with_context(|| {
            format!("--nonce {h:?}: not hex; give the nonce you sent the enclave as hex digits")
        })?),
        None => None,
    };
    let at = match &args.at {
        Some(t) => Epoch::parse_time(t).context("--at")?,
        None => Epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
    };
    let bytes = attestation::read_file(&args.document)?;
    let doc = attestation::parse(&bytes)
        .with_context(|| format!("attestation document {}", args.document.display()))?;
    let policy = Policy {
        anchor: TrustAnchor::aws_nitro(),
        at,
        nonce,
        expected,
        allow_unsigned: args.insecure_unsigned,
    };
    let report = attestation::verify(&doc, &policy);
    if report.verdict == Verdict::Unauthenticated {
        super::output::eline(format_args!(
            "eifbake: WARNING: {} is NOT SIGNED: nothing in it was authenticated. Its PCRs match, but anyone can \
             write such a document (QEMU's nitro-enclave machine does); it proves nothing about a real enclave.",
            args.document.display()
        ));
    }
    if args.json {
        super::output::json(&report)?;
    } else {
        print_text(&args, &report)?;
    }
    Ok(match report.verdict {
        Verdict::Good | Verdict::Unauthenticated => ExitCode::SUCCESS,
        Verdict::Bad => ExitCode::from(1),
    })
}

fn print_text(args: &AttestationVerifyArgs, r: &Report) -> Result<()> {
    let word = match r.verdict {
        Verdict::Unauthenticated => "UNAUTHENTICATED (unsigned document: NOTHING WAS AUTHENTICATED)",
        v => v.word(),
    };
    outln!("{word} {}", args.document.display());
    outln!("module {}, document made {}, certificates checked at {}", r.module_id, r.time, r.checked_at);
    for c in &r.checks {
        outln!("{:<10} {:<8} {}", c.what, c.status.word(), c.detail);
    }
    for n in &r.notes {
        outln!("note: {n}");
    }
    Ok(())
}
