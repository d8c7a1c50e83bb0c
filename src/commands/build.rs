//! `eifbake build RECIPE`: the hermetic build, see [`crate::build`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::args::{BuildArgs, BuildSigningArgs, Global};
use crate::build::{build, BuildOptions, SignWith, SigningOverrides};
use crate::epoch::Epoch;
use crate::oci::store::Store;
use crate::signing::Validity;

/// The signing choice of `build` and `check` from their flags and `$EIFBAKE_SIGNING_KEY`.
pub fn sign_with(a: &BuildSigningArgs) -> SignWith {
    if a.unsigned {
        return SignWith::Unsigned;
    }
    SignWith::Recipe(SigningOverrides {
        certificate: a.signing_certificate.clone(),
        key: a.private_key.clone(),
        fallback_key: std::env::var("EIFBAKE_SIGNING_KEY").ok().filter(|k| !k.is_empty()),
        validity: if a.ignore_certificate_validity { Validity::Ignore } else { Validity::Enforce },
        token: a.token.options(),
    })
}

/// The build options `lock` and `fetch` run fetch steps with.
pub fn fetch_step_options(
    a: &crate::args::FetchStepArgs,
    lockfile: Option<std::path::PathBuf>,
    insecure: &[String],
    global: &Global,
) -> Result<BuildOptions> {
    Ok(BuildOptions {
        store: Store::default_path(global.store.as_deref())?,
        out_dir: a.out.clone(),
        lockfile,
        runtime: a.runtime,
        offline: global.offline,
        no_cache: false,
        network: true,
        insecure: insecure.to_vec(),
        mirrors: global.mirrors()?,
        epoch: Epoch::from_env()?,
        step_timeout: Duration::from_secs(a.step_timeout),
        keep_work: false,
        signing: crate::build::SignWith::Unsigned,
    })
}

pub fn run(args: BuildArgs, global: &Global) -> Result<ExitCode> {
    let opts = BuildOptions {
        store: Store::default_path(global.store.as_deref())?,
        out_dir: args.out,
        lockfile: args.lockfile,
        runtime: args.runtime,
        offline: global.offline,
        no_cache: args.no_cache,
        network: true,
        insecure: args.insecure_registry,
        mirrors: global.mirrors()?,
        epoch: Epoch::from_env()?,
        step_timeout: Duration::from_secs(args.step_timeout),
        keep_work: args.keep_work,
        signing: sign_with(&args.signing),
    };
    let r = build(&args.recipe, &opts)?;
    if args.json {
        super::output::json(&r)?;
    } else {
        let o = &r.manifest.outputs;
        for s in &r.steps_cached {
            outln!("step {s}: cached");
        }
        for s in &r.steps_run {
            match r.step_seconds.get(s) {
                Some(secs) => outln!("step {s}: ran ({secs:.2} s in the sandbox)"),
                None => outln!("step {s}: ran"),
            }
        }
        outln!("{}  {}  ({} bytes)", o.eif.sha256, r.eif.display(), o.eif.size);
        super::output::text(&std::fs::read_to_string(&r.pcrs)?)?;
        if let Some(sig) = &o.signature {
            let c = &sig.certificate;
            outln!("signed by {} (certificate sha256 {})", c.subject, c.sha256_fingerprint);
        }
        outln!("wrote {}, {}", r.manifest_path.display(), r.provenance.display());
    }
    Ok(ExitCode::SUCCESS)
}
