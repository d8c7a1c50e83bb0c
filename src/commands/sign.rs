//! Detached signing, for keys that live elsewhere (a KMS, an offline machine):
//! `eifbake sign-payload EIF` prints the bytes to sign, `eifbake
//! attach-signature EIF --certificate C --signature SIG` puts the signature on
//! the EIF.
//!
//! The payload is the COSE Sig_structure over PCR0
//! ([`crate::eif::signature::to_be_signed`]); an ES384 signer signs it
//! (SHA-384, then ECDSA P-384). The signature may be DER or raw r ‖ s
//! ([`DetachedSigner::new`] says how the form is told). Attaching writes
//! exactly what in-place signing with the same certificate and signature
//! bytes writes: the signature section is built by the same code.
//!
//! Invariants: nothing is written unless the signature verifies over this
//! EIF's PCR0 with the certificate's key and the certificate passes the
//! checks of in-place signing (validity included, unless
//! `--ignore-certificate-validity`); the output is written under a temporary
//! name and renamed, so on any error the output path is as it was (the
//! input, when signing in place, stays unsigned and intact).
//!
//! Not for: the signature section's format (see [`crate::eif::signature`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::args::{AttachSignatureArgs, SignPayloadArgs};
use crate::eif::{self, signature, Eif, Signing};
use crate::fsutil::write_atomic;
use crate::pcr::Pcr;
use crate::progress::Progress;
use crate::signing::{load_certificate, DetachedSigner, Validity};

/// `sign-payload`: print (or write with `--out`) the bytes to sign.
pub fn payload(args: SignPayloadArgs) -> Result<ExitCode> {
    let (pcr0, _) = pcr0_of(&args.eif)?;
    let tbs = signature::to_be_signed(&pcr0);
    match &args.out {
        Some(out) => write_atomic(out, &tbs)?,
        None => super::output::bytes(&tbs)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `attach-signature`: check the signature, then write the signed EIF.
pub fn attach(args: AttachSignatureArgs) -> Result<ExitCode> {
    let validity = if args.ignore_certificate_validity { Validity::Ignore } else { Validity::Enforce };
    let (cert, key) = load_certificate(&args.certificate, validity, SystemTime::now())?;
    let (pcr0, signed) = pcr0_of(&args.eif)?;
    if signed {
        bail!(
            "{} is signed already; attach the signature to the unsigned image (build it without a key)",
            args.eif.display()
        );
    }
    let sp = args.signature.display().to_string();
    let bytes = std::fs::read(&args.signature).with_context(|| format!("cannot read signature {sp}"))?;
    let signer = DetachedSigner::new(cert, &key, &bytes, &signature::to_be_signed(&pcr0), &sp)?;
    let out = args.out.as_ref().unwrap_or(&args.eif);
    let written = eif::sign_existing(&args.eif, &Signing::Key(Arc::new(signer)), out, &Progress::hidden())?;
    let m = &written.measurements;
    if args.json {
        let v = serde_json::json!({
            "output": out.display().to_string(),
            "size": written.size,
            "crc32": format!("{:08x}", written.header.crc32),
            "Measurements": m.nitro_cli_json(),
        });
        super::output::json(&v)?;
    } else {
        super::output::text(&m.to_pcrs_file())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The PCR0 of an EIF whose CRC checks, and whether it is signed.
fn pcr0_of(path: &std::path::Path) -> Result<(Pcr, bool)> {
    let e = Eif::open(path)?;
    let v = e.verify(&Progress::hidden())?;
    if !v.crc_ok() {
        bail!(
            "{}: CRC-32 mismatch (header {:08x}, contents {:08x}); not signing a corrupt image",
            path.display(),
            v.stored_crc,
            v.computed_crc
        );
    }
    Ok((v.measurements.pcr0, e.section(eif::SectionKind::Signature).is_some()))
}
