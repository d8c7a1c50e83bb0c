//! A private SoftHSM2 token for one test: its own `softhsm2.conf` and token
//! directory (so tests never share a token), an ECDSA P-384 key generated on
//! the token (sensitive, not extractable), and a certificate for that key
//! issued by the checked-in test CA with the openssl CLI.
//!
//! Needs Debian's `softhsm2` (scripts/deps.sh) and `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "eifbake-test";
pub const KEY: &str = "eif-signing";
pub const PIN: &str = "1234";

/// DER of the named curve secp384r1.
const EC_PARAMS_P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// The DER SubjectPublicKeyInfo prefix of a P-384 key, before its 97-byte point.
const SPKI_P384_PREFIX: &str = "3076301006072a8648ce3d020106052b81040022036200";

pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    /// SOFTHSM2_CONF for every process that opens the token.
    pub conf: PathBuf,
    /// The certificate of the key on the token (PEM).
    pub certificate: PathBuf,
}

impl SoftHsm {
    /// A fresh token with one P-384 key, and its certificate.
    pub fn new() -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let s = SoftHsm { certificate: dir.path().join("token-cert.pem"), dir, conf };
        let o = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &s.conf)
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "5678"])
            .output()
            .expect("softhsm2-util (Debian package softhsm2; scripts/deps.sh installs it)");
        assert!(o.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&o.stderr));
        let point = s.with_session(|session| {
            let base = [Attribute::Token(true), Attribute::Label(KEY.into()), Attribute::Id(vec![1])];
            let mut public = vec![Attribute::EcParams(EC_PARAMS_P384.to_vec()), Attribute::Verify(true)];
            public.extend(base.clone());
            let mut private = vec![
                Attribute::Sign(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Private(true),
            ];
            private.extend(base);
            let (pub_key, _) =
                session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private).unwrap();
            match &session.get_attributes(pub_key, &[AttributeType::EcPoint]).unwrap()[0] {
                Attribute::EcPoint(p) => p.clone(),
                other => panic!("{other:?}"),
            }
        });
        // CKA_EC_POINT is a DER OCTET STRING (04 61) around the uncompressed point.
        assert_eq!(&point[..2], &[0x04, 0x61], "{}", hex::encode(&point));
        let mut spki = hex::decode(SPKI_P384_PREFIX).unwrap();
        spki.extend_from_slice(&point[2..]);
        let pubkey = s.dir.path().join("token-pub.der");
        std::fs::write(&pubkey, spki).unwrap();
        s.issue_certificate(&pubkey);
        s
    }

    /// Issue the token key's certificate with the test CA (openssl CLI).
    fn issue_certificate(&self, pubkey_der: &Path) {
        let pem = self.dir.path().join("token-pub.pem");
        openssl(&["pkey", "-pubin", "-inform", "DER", "-in", s(pubkey_der), "-out", s(&pem)]);
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
        // OpenSSL 3.0's x509 has no -new: a request made with a throwaway key,
        // issued with the token's public key forced in.
        let (tmp_key, csr, ext) = (
            self.dir.path().join("throwaway.key"),
            self.dir.path().join("req.csr"),
            self.dir.path().join("ext"),
        );
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", s(&tmp_key)]);
        let subj = "/CN=eifbake SoftHSM2 test signer (test only)/O=eifbake tests";
        openssl(&["req", "-new", "-key", s(&tmp_key), "-subj", subj, "-out", s(&csr)]);
        std::fs::write(&ext, "keyUsage=critical,digitalSignature\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-force_pubkey",
            s(&pem),
            "-CA",
            s(&data.join("ca.pem")),
            "-CAkey",
            s(&data.join("ca.key")),
            "-set_serial",
            "4242",
            "-days",
            "3650",
            "-extfile",
            s(&ext),
            "-out",
            s(&self.certificate),
        ]);
    }

    /// SoftHSM2 reads SOFTHSM2_CONF when initialised, and is one library per
    /// process: sessions of this test binary's tokens take turns.
    pub fn with_session<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        self.in_process(|| self.session_here(f))
    }

    /// Run `f` with this token's SOFTHSM2_CONF in the test process, taking
    /// turns with every other use of SoftHSM2 in this process.
    pub fn in_process<T>(&self, f: impl FnOnce() -> T) -> T {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("SOFTHSM2_CONF", &self.conf);
        f()
    }

    fn session_here<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        let ctx = Pkcs11::new(MODULE).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|slot| ctx.get_token_info(*slot).unwrap().label() == TOKEN)
            .expect("the test token");
        let session = ctx.open_rw_session(slot).unwrap();
        session.login(UserType::User, Some(&AuthPin::from(PIN.to_string()))).unwrap();
        let out = f(&session);
        drop(session);
        ctx.finalize().unwrap();
        out
    }

    /// The private key's CKA_EXTRACTABLE and CKA_SENSITIVE, and whether its
    /// CKA_VALUE (the secret scalar) can be read.
    pub fn key_custody(&self) -> (bool, bool, bool) {
        self.with_session(|session| {
            let keys = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(KEY.into()),
                ])
                .unwrap();
            assert_eq!(keys.len(), 1);
            let attrs = session
                .get_attributes(keys[0], &[AttributeType::Extractable, AttributeType::Sensitive])
                .unwrap();
            let flag = |t: AttributeType| {
                attrs.iter().find_map(|a| match (a, t) {
                    (Attribute::Extractable(v), AttributeType::Extractable) => Some(*v),
                    (Attribute::Sensitive(v), AttributeType::Sensitive) => Some(*v),
                    _ => None,
                })
            };
            let value = session.get_attributes(keys[0], &[AttributeType::Value]).unwrap_or_default();
            let readable = value.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()));
            (flag(AttributeType::Extractable).unwrap(), flag(AttributeType::Sensitive).unwrap(), readable)
        })
    }

    /// The key's URI, with the PIN in it.
    pub fn uri(&self) -> String {
        format!("pkcs11:token={TOKEN};object={KEY}?pin-value={PIN}")
    }

    /// The environment an eifbake child needs to reach the token.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("SOFTHSM2_CONF", self.conf.clone())]
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().expect("openssl CLI");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}
