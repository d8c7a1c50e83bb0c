//! Signing with a key on a PKCS#11 token (an HSM, a smart card, SoftHSM2):
//! `--private-key 'pkcs11:token=…;object=…'`.
//!
//! The key is named by an RFC 7512 URI. Path attributes: `token` (the token
//! label), `object` (the key's CKA_LABEL), `id` (its CKA_ID, percent-encoded
//! bytes), `type` (must be `private` when given), `serial`, `manufacturer`,
//! `model` (more token matches), `slot-id`. Query attributes: `pin-value`
//! (the user PIN), `pin-source` (`file:/path` or a path: a file whose first
//! line is the PIN), `module-path` (the PKCS#11 module). Any other attribute
//! is an error, so a misspelt one never selects a key silently.
//!
//! The module is, in order: the URI's `module-path`, `--pkcs11-module`,
//! `$EIFBAKE_PKCS11_MODULE`, then Debian's SoftHSM2 ([`DEFAULT_MODULE`]).
//! The PIN is, in order: `pin-value`, `pin-source`, `--pin-file`,
//! `$EIFBAKE_PKCS11_PIN`; with none the session is used without logging in
//! (a token whose key needs a login then fails to find or use it, an error).
//!
//! What [`TokenSigner::open`] checks before anything is built, each failure
//! an error naming the URI: the module loads, exactly one token matches,
//! the login succeeds, exactly one private key matches, it is an EC key on
//! P-384 (CKA_EC_PARAMS), and a probe signature made with it verifies under
//! the certificate's key (so a key that is not the certificate's is refused
//! before any work). Signing is CKM_ECDSA over the SHA-384 digest of the
//! Sig_structure; the token returns r ‖ s, which is what COSE needs, and the
//! EIF writer checks the signature again before writing it.
//!
//! The private key never leaves the token: eifbake asks only for signatures
//! and reads only public attributes. A token's ECDSA nonces are its own
//! (usually random), so unlike a PEM key the signature bytes differ from run
//! to run; the manifest records the signature section, and `verify` reuses
//! it, so a rebuild still matches bit for bit.
//!
//! Not for: creating keys or certificates on a token, or other algorithms
//! than ES384.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p384::ecdsa::VerifyingKey;
use sha2::{Digest as _, Sha384};

use super::{verify_es384, Certificate, Signer, TokenOptions, ES384_SIGNATURE_LEN};

/// Debian's SoftHSM2 module (package `softhsm2`), the default module.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// DER of the named curve secp384r1 (OID 1.3.132.0.34), as CKA_EC_PARAMS holds it.
const EC_PARAMS_P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A parsed `pkcs11:` URI (RFC 7512), reduced to what eifbake uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUri {
    pub token: Option<String>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    pub pin_value: Option<String>,
    pub pin_source: Option<PathBuf>,
    pub module_path: Option<PathBuf>,
}

impl KeyUri {
    /// Parse `pkcs11:path-attrs[?query-attrs]`; unknown attributes are errors.
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri.strip_prefix("pkcs11:").context("a PKCS#11 URI starts with `pkcs11:`")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut k = KeyUri::default();
        for (attr, sep) in [(path, ';'), (query, '&')] {
            for part in attr.split(sep).filter(|p| !p.is_empty()) {
                let (name, value) =
                    part.split_once('=').with_context(|| format!("attribute {part:?} has no `=value`"))?;
                let bytes = percent_decode(value).with_context(|| format!("attribute {name}"))?;
                k.set(name, bytes, sep == '?' || sep == '&')?;
            }
        }
        if k.object.is_none() && k.id.is_none() {
            bail!("it names no key: give `object=LABEL` (the key's label) or `id=%01…`");
        }
        Ok(k)
    }

    fn set(&mut self, name: &str, bytes: Vec<u8>, query: bool) -> Result<()> {
        let text =
            || String::from_utf8(bytes.clone()).map_err(|_| anyhow::anyhow!("attribute {name} is not UTF-8"));
        let slot = match (query, name) {
            (false, "token") => &mut self.token,
            (false, "object") => &mut self.object,
            (false, "serial") => &mut self.serial,
            (false, "manufacturer") => &mut self.manufacturer,
            (false, "model") => &mut self.model,
            (false, "id") => return set_once(name, &mut self.id, bytes),
            (false, "type") if bytes == b"private" => return Ok(()),
            (false, "type") => {
                bail!("type={} is not a private key; eifbake signs with `type=private`", text()?)
            }
            (false, "slot-id") => {
                let n = text()?.parse().map_err(|_| anyhow::anyhow!("slot-id is not a number"))?;
                return set_once(name, &mut self.slot_id, n);
            }
            (true, "pin-value") => &mut self.pin_value,
            (true, "pin-source") => {
                let t = text()?;
                let p = PathBuf::from(t.strip_prefix("file:").unwrap_or(&t));
                return set_once(name, &mut self.pin_source, p);
            }
            (true, "module-path") => return set_once(name, &mut self.module_path, PathBuf::from(text()?)),
            _ => bail!(
                "unknown {} attribute {name:?}; eifbake reads token, object, id, type, serial, manufacturer, \
                 model and slot-id (path) and pin-value, pin-source and module-path (query)",
                if query { "query" } else { "path" }
            ),
        };
        set_once(name, slot, text()?)
    }
}

fn set_once<T>(name: &str, slot: &mut Option<T>, value: T) -> Result<()> {
    if slot.replace(value).is_some() {
        bail!("attribute {name} is given twice");
    }
    Ok(())
}

/// RFC 3986 percent-decoding.
fn percent_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next().unwrap_or(b'?'), bytes.next().unwrap_or(b'?')];
        let v = std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        out.push(v.with_context(|| format!("bad percent-escape in {s:?}"))?);
    }
    Ok(out)
}

/// A signer whose key is on a PKCS#11 token. The session stays open (and
/// logged in) until the signer is dropped, which closes it and then
/// finalises the module.
pub struct TokenSigner {
    certificate: Certificate,
    session: Mutex<Session>,
    key: ObjectHandle,
    uri: String,
    /// Declared after the session: dropped (finalised) after it is closed.
    _module: Module,
}

impl TokenSigner {
    /// Open the token the URI names, find the key, and check it against the
    /// certificate (see the module docs). Errors name the URI without its PIN.
    pub fn open(
        uri: &str,
        certificate: Certificate,
        cert_key: &VerifyingKey,
        opts: &TokenOptions,
    ) -> Result<Self> {
        let shown = redact(uri);
        let fail = |e: anyhow::Error| anyhow::anyhow!("private key {shown}: {e:#}");
        let k = KeyUri::parse(uri).map_err(fail)?;
        let module = Module(Some(load_module(&module_path(&k, opts)).map_err(fail)?));
        let context = module.0.as_ref().expect("just loaded");
        let slot = find_token(context, &k).map_err(fail)?;
        let session =
            context.open_ro_session(slot).map_err(|e| fail(anyhow::anyhow!("cannot open a session: {e}")))?;
        if let Some(pin) = pin(&k, opts).map_err(fail)? {
            session
                .login(UserType::User, Some(&AuthPin::from(pin)))
                .map_err(|e| fail(anyhow::anyhow!("cannot log in to the token with the PIN given: {e}")))?;
        }
        let key = find_key(&session, &k).map_err(fail)?;
        let signer = TokenSigner {
            certificate,
            session: Mutex::new(session),
            key,
            uri: shown.clone(),
            _module: module,
        };
        signer.check_key(cert_key).map_err(fail)?;
        Ok(signer)
    }

    /// P-384, and a probe signature verifies under the certificate's key.
    fn check_key(&self, cert_key: &VerifyingKey) -> Result<()> {
        let session = self.session.lock().expect("token session lock");
        let attrs = session
            .get_attributes(self.key, &[AttributeType::EcParams])
            .context("cannot read the key's CKA_EC_PARAMS")?;
        match attrs.first() {
            Some(Attribute::EcParams(p)) if p.as_slice() == EC_PARAMS_P384 => {}
            Some(Attribute::EcParams(p)) => {
                bail!("the key is not on P-384 (CKA_EC_PARAMS {}); {}", hex::encode(p), super::NEED_P384)
            }
            _ => bail!("the token does not give the key's CKA_EC_PARAMS"),
        }
        drop(session);
        let probe = b"eifbake: does this token key belong to the signing certificate?";
        let sig = self.sign_es384(probe)?;
        verify_es384(cert_key, probe, &sig).map_err(|_| {
            anyhow::anyhow!(
                "the key does not belong to the signing certificate {} (a signature made with it does not \
                 verify under the certificate's public key); name the certificate's key",
                self.certificate.subject()
            )
        })
    }
}

impl Signer for TokenSigner {
    fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn sign_es384(&self, message: &[u8]) -> Result<[u8; ES384_SIGNATURE_LEN]> {
        let digest = Sha384::digest(message);
        let session = self.session.lock().expect("token session lock");
        let sig = session
            .sign(&Mechanism::Ecdsa, self.key, &digest)
            .with_context(|| format!("the token refused to sign with {} (CKM_ECDSA)", self.uri))?;
        <[u8; ES384_SIGNATURE_LEN]>::try_from(sig.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "the token returned a {}-byte ECDSA signature, expected r‖s of {ES384_SIGNATURE_LEN} (is the key P-384?)",
                sig.len()
            )
        })
    }

    fn key_location(&self) -> String {
        self.uri.clone()
    }
}

/// A loaded, initialised module, finalised when dropped (after every
/// session of it is closed: a local or field declared after it).
struct Module(Option<Pkcs11>);

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(context) = self.0.take() {
            let _ = context.finalize();
        }
    }
}

/// The URI without its `pin-value`, for messages.
pub fn redact(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else { return uri.to_string() };
    let kept: Vec<String> = query
        .split('&')
        .map(|q| if q.starts_with("pin-value=") { "pin-value=(hidden)".to_string() } else { q.to_string() })
        .collect();
    format!("{path}?{}", kept.join("&"))
}

fn module_path(k: &KeyUri, opts: &TokenOptions) -> PathBuf {
    k.module_path
        .clone()
        .or_else(|| opts.module.clone())
        .or_else(|| std::env::var_os("EIFBAKE_PKCS11_MODULE").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE))
}

fn load_module(module: &Path) -> Result<Pkcs11> {
    let m = module.display();
    if !module.exists() {
        bail!(
            "the PKCS#11 module {m} does not exist; give --pkcs11-module, $EIFBAKE_PKCS11_MODULE or \
             module-path= in the URI (Debian's SoftHSM2 is package softhsm2)"
        );
    }
    let ctx = Pkcs11::new(module).map_err(|e| anyhow::anyhow!("cannot load the PKCS#11 module {m}: {e}"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| anyhow::anyhow!("the PKCS#11 module {m} failed to initialise: {e}"))?;
    Ok(ctx)
}

/// The one slot whose token matches every token attribute of the URI.
fn find_token(ctx: &Pkcs11, k: &KeyUri) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| anyhow::anyhow!("cannot list the token slots: {e}"))?;
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for slot in slots {
        let info =
            ctx.get_token_info(slot).map_err(|e| anyhow::anyhow!("cannot read token information: {e}"))?;
        seen.push(format!("{:?}", info.label().trim_end()));
        let want = |w: &Option<String>, have: &str| w.as_deref().is_none_or(|w| w == have.trim_end());
        if want(&k.token, info.label())
            && want(&k.serial, info.serial_number())
            && want(&k.manufacturer, info.manufacturer_id())
            && want(&k.model, info.model())
            && k.slot_id.is_none_or(|id| id == slot.id())
        {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] if seen.is_empty() => {
            bail!("the module has no initialised token (is the token plugged in and initialised?)")
        }
        [] => bail!("no token matches; the tokens present are {}", seen.join(", ")),
        _ => bail!("{} tokens match; add token=, serial= or slot-id= to the URI", found.len()),
    }
}

fn pin(k: &KeyUri, opts: &TokenOptions) -> Result<Option<String>> {
    if let Some(p) = &k.pin_value {
        return Ok(Some(p.clone()));
    }
    if let Some(file) = k.pin_source.as_ref().or(opts.pin_file.as_ref()) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the PIN file {}", file.display()))?;
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            bail!("the PIN file {} is empty", file.display());
        }
        return Ok(Some(first.to_string()));
    }
    Ok(std::env::var("EIFBAKE_PKCS11_PIN").ok().filter(|p| !p.is_empty()))
}

/// The one EC private key matching the URI's object label and id.
fn find_key(session: &Session, k: &KeyUri) -> Result<ObjectHandle> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &k.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &k.id {
        template.push(Attribute::Id(id.clone()));
    }
    let keys =
        session.find_objects(&template).map_err(|e| anyhow::anyhow!("cannot search the token: {e}"))?;
    let key = match keys.as_slice() {
        [one] => *one,
        [] => bail!(
            "no private key with this object/id on the token (not logged in? a private key is visible only \
             after login: give the PIN with ?pin-value=, --pin-file or $EIFBAKE_PKCS11_PIN)"
        ),
        _ => bail!("{} private keys match; add id= to the URI", keys.len()),
    };
    let attrs = session
        .get_attributes(key, &[AttributeType::KeyType])
        .context("cannot read the key's CKA_KEY_TYPE")?;
    match attrs.first() {
        Some(Attribute::KeyType(t)) if *t == KeyType::EC => Ok(key),
        Some(Attribute::KeyType(t)) => bail!("the key is a {t} key; {}", super::NEED_P384),
        _ => bail!("the token does not give the key's CKA_KEY_TYPE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7512_uris() {
        let k = KeyUri::parse(
            "pkcs11:token=My%20Token;object=eif-key;id=%01%ff?pin-value=1234&module-path=/m.so",
        )
        .unwrap();
        assert_eq!(k.token.as_deref(), Some("My Token"));
        assert_eq!(k.object.as_deref(), Some("eif-key"));
        assert_eq!(k.id, Some(vec![1, 0xff]));
        assert_eq!(k.pin_value.as_deref(), Some("1234"));
        assert_eq!(k.module_path, Some(PathBuf::from("/m.so")));
        let k = KeyUri::parse("pkcs11:object=k;type=private?pin-source=file:/run/pin").unwrap();
        assert_eq!(k.pin_source, Some(PathBuf::from("/run/pin")));
        let err = |u: &str| format!("{:#}", KeyUri::parse(u).unwrap_err());
        assert!(err("pkcs11:token=t").contains("names no key"));
        assert!(err("pkcs11:object=k;tokn=t").contains("unknown path attribute \"tokn\""));
        assert!(err("pkcs11:object=k?pin=1").contains("unknown query attribute \"pin\""));
        assert!(err("pkcs11:object=k;type=public").contains("not a private key"));
        assert!(err("pkcs11:object=k;object=j").contains("given twice"));
        assert!(err("pkcs11:object=k%zz").contains("bad percent-escape"));
        assert!(err("pkcs11:object").contains("has no `=value`"));
    }

    #[test]
    fn redacts_the_pin() {
        assert_eq!(
            redact("pkcs11:token=t;object=k?module-path=/m&pin-value=secret"),
            "pkcs11:token=t;object=k?module-path=/m&pin-value=(hidden)"
        );
        assert_eq!(redact("pkcs11:object=k"), "pkcs11:object=k");
    }

    #[test]
    fn a_missing_module_is_named() {
        let opts = TokenOptions { module: Some(PathBuf::from("/nonexistent/libp11.so")), pin_file: None };
        let k = KeyUri::parse("pkcs11:object=k").unwrap();
        let e = format!("{:#}", load_module(&module_path(&k, &opts)).err().unwrap());
        assert!(e.contains("/nonexistent/libp11.so does not exist") && e.contains("--pkcs11-module"), "{e}");
    }
}
