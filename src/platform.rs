//! The target architecture and the OCI platform: one type for each, in
//! every spelling eifbake reads or writes.
//!
//! [`Arch`] is the enclave's architecture. Its names are the recipe's and
//! the command line's (`x86_64`, `aarch64`, also its `Display`, `FromStr`
//! and serde form, as the manifest records it); its OCI names are `amd64`
//! and `arm64` ([`Arch::oci`], [`Arch::from_oci`]); the EIF header stores it
//! as flag bit 0 ([`Arch::flags`], [`Arch::from_flags`]); [`Arch::host`] is
//! the machine eifbake runs on, when it is one of the two.
//!
//! [`Platform`] is an OCI platform as a lock and a manifest pin it:
//! `os/arch[/variant]` with the OCI architecture name (`linux/arm64`). It is
//! parsed once where it enters (lockfile, manifest, registry answer) and
//! compared as a value from then on.
//!
//! Not for: the `platform` object of an OCI index descriptor or image
//! configuration (foreign data that may name any architecture: see
//! [`crate::oci::store`]), or seccomp's architecture tokens (see
//! [`crate::sandbox::seccomp`]).
//!
//! Invariants: every spelling round-trips (`name`/`FromStr`, `oci`/`from_oci`,
//! `flags`/`from_flags`, `Platform`'s `Display`/`FromStr`); a parse error
//! quotes the text and lists what is accepted, for the caller to prefix with
//! the file and field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::eif::FLAG_AARCH64;

/// The enclave's target architecture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Arch {
    #[default]
    #[serde(rename = "x86_64")]
    #[value(name = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    #[value(name = "aarch64")]
    Aarch64,
}

/// Why a string is not an [`Arch`] or a [`Platform`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl Arch {
    /// Both architectures, x86_64 first.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The recipe and command-line name (`x86_64`, `aarch64`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI platform architecture name (`amd64`, `arm64`).
    pub fn oci(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture an OCI name (`amd64`, `arm64`) stands for.
    pub fn from_oci(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.oci() == name)
    }

    /// The EIF header's flags for this architecture.
    pub fn flags(self) -> u16 {
        match self {
            Arch::X86_64 => 0,
            Arch::Aarch64 => FLAG_AARCH64,
        }
    }

    /// The architecture an EIF header's flags record.
    pub fn from_flags(flags: u16) -> Arch {
        if flags & FLAG_AARCH64 != 0 {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The architecture of the programs this host runs natively, if it is one
    /// eifbake builds for.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }

    /// The host's architecture in OCI terms, for messages (Rust's name when
    /// it is neither of the two).
    pub fn host_oci_name() -> &'static str {
        Arch::host().map_or(std::env::consts::ARCH, Arch::oci)
    }

    /// The ELF `e_machine` of this architecture's programs.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }

    /// The other architecture.
    pub fn other(self) -> Arch {
        match self {
            Arch::X86_64 => Arch::Aarch64,
            Arch::Aarch64 => Arch::X86_64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the recipe and command-line names, `x86_64` and `aarch64`.
impl FromStr for Arch {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Arch, ParseError> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ParseError(format!("architecture {s:?}: expected \"x86_64\" or \"aarch64\"")))
    }
}

/// An OCI platform as eifbake pins it: `os/arch[/variant]`, `arch` in OCI
/// terms (`linux/amd64`, `linux/arm64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: Arch,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>`, the platform every image of a recipe for `arch` is pinned for.
    pub fn linux(arch: Arch) -> Platform {
        Platform { os: "linux".to_string(), arch, variant: None }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch.oci())?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Parses `os/arch` or `os/arch/variant` (`linux/amd64`, `linux/arm64/v8`).
impl FromStr for Platform {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Platform, ParseError> {
        let fail = |why: &str| ParseError(format!("platform {s:?}: {why}"));
        let mut parts = s.split('/');
        let (Some(os), Some(arch), variant, None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64"));
        };
        if os.is_empty() || variant == Some("") {
            return Err(fail("expected OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64"));
        }
        let arch = Arch::from_oci(arch).ok_or_else(|| {
            fail(&format!("architecture {arch:?} is not one eifbake builds for (amd64 or arm64)"))
        })?;
        Ok(Platform { os: os.to_string(), arch, variant: variant.map(str::to_string) })
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_spellings_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
            assert_eq!(Arch::from_oci(a.oci()), Some(a));
            assert_eq!(Arch::from_flags(a.flags()), a);
            assert_eq!(a.other().other(), a);
            assert_ne!(a.other(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
            assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), a);
            let clap = <Arch as clap::ValueEnum>::from_str(a.name(), false).unwrap();
            assert_eq!(clap, a);
        }
        assert_eq!((Arch::X86_64.oci(), Arch::Aarch64.oci()), ("amd64", "arm64"));
        assert_eq!((Arch::X86_64.flags(), Arch::Aarch64.flags()), (0, 1));
        // Other header bits do not change the architecture.
        assert_eq!(Arch::from_flags(0x8000), Arch::X86_64);
        assert_eq!(Arch::from_flags(0x8001), Arch::Aarch64);
        assert_eq!(Arch::default(), Arch::X86_64);
    }

    #[test]
    fn arch_refuses_other_spellings_and_says_what_is_accepted() {
        for bad in ["amd64", "arm64", "X86_64", "x86-64", "riscv64", ""] {
            let e = bad.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("\"x86_64\" or \"aarch64\""), "{e}");
        }
        assert_eq!(Arch::from_oci("x86_64"), None);
        assert_eq!(Arch::from_oci("386"), None);
        // The recipe's serde form still names the field's variants.
        let e = serde_json::from_str::<Arch>("\"amd64\"").unwrap_err().to_string();
        assert!(e.contains("x86_64") && e.contains("aarch64"), "{e}");
    }

    #[test]
    fn host_arch_matches_the_build_target() {
        let host = Arch::host();
        match std::env::consts::ARCH {
            "x86_64" => assert_eq!(host, Some(Arch::X86_64)),
            "aarch64" => assert_eq!(host, Some(Arch::Aarch64)),
            _ => assert_eq!(host, None),
        }
        assert_eq!(Arch::host_oci_name(), host.map_or(std::env::consts::ARCH, Arch::oci));
    }

    #[test]
    fn platform_round_trips() {
        for text in ["linux/amd64", "linux/arm64", "linux/arm64/v8", "windows/amd64"] {
            let p: Platform = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
        }
        assert_eq!(Platform::linux(Arch::Aarch64).to_string(), "linux/arm64");
        assert_eq!("linux/amd64".parse::<Platform>().unwrap(), Platform::linux(Arch::X86_64));
        assert_ne!("linux/arm64/v8".parse::<Platform>().unwrap(), Platform::linux(Arch::Aarch64));
    }

    #[test]
    fn platform_errors_quote_the_text_and_say_why() {
        for (bad, why) in [
            ("linux/s390x", "\"s390x\" is not one eifbake builds for (amd64 or arm64)"),
            ("linux/x86_64", "\"x86_64\" is not one eifbake builds for"),
            ("amd64", "expected OS/ARCH"),
            ("/amd64", "expected OS/ARCH"),
            ("linux/arm64/", "expected OS/ARCH"),
            ("linux/arm64/v8/x", "expected OS/ARCH"),
            ("", "expected OS/ARCH"),
        ] {
            let e = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("platform {bad:?}: ")) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_lockfile_field_error_names_the_field_and_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Image {
            platform: Platform,
        }
        let e = toml::from_str::<Image>("platform = \"linux/s390x\"\n").unwrap_err().to_string();
        assert!(e.contains("platform = \"linux/s390x\"") && e.contains("amd64 or arm64"), "{e}");
    }
}
