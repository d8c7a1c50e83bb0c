//! Host configuration: eifbake's config file and the registry mirrors it
//! and `--registry-mirror FROM=TO` name.
//!
//! What it is for: policy that belongs to the machine, not to a recipe.
//! Which registry serves `docker.io` here (a mirror, a proxy cache, a
//! loopback registry on an air-gapped host) says nothing about what is
//! built: the lock pins every image by digest and every pulled manifest and
//! blob is checked against it, whoever serves it. So mirrors are not recipe
//! content (a recipe would then build differently per host, and a rebuilder
//! would inherit the builder's network), and they are never measured.
//!
//! The file: `$EIFBAKE_CONFIG` when set (it must then exist), else
//! `$XDG_CONFIG_HOME/eifbake/config.toml` (`~/.config/eifbake/config.toml`)
//! when it exists. Not the store's directory: the store is a cache that
//! `verify` replaces with a fresh temporary one by default, and a policy
//! kept there would silently stop applying. TOML, unknown keys are errors:
//!
//! ```toml
//! [[registry.mirror]]
//! from = "docker.io"          # a registry as references name it (host[:port])
//! to = "127.0.0.1:5000"       # host[:port], optionally /a/path prefix for the repositories
//! ```
//!
//! Mirrors of a registry are tried in order (command line first, then the
//! file), then the registry itself.
//!
//! Crates (`cargo_lock` sources, [`crate::cargo_vendor`]) are downloaded
//! from crates.io's download URL unless the file names another: a crates.io
//! mirror, or a loopback server on an air-gapped host. Each `.crate` is
//! checked against the checksum of the project's `Cargo.lock`, whoever
//! serves it, so this too is host policy:
//!
//! ```toml
//! [cargo]
//! download = "http://127.0.0.1:8080/crates/{crate}/{crate}-{version}.crate"
//! ```
//!
//! The markers are cargo's: `{crate}`, `{version}`, `{sha256-checksum}`.
//!
//! Invariants: a [`Mirror`]'s `from` is a bare registry (`docker.io` for
//! its aliases `index.docker.io` and `registry-1.docker.io`), `to` a host
//! with an optional repository prefix; both validated when parsed.
//!
//! Not for: talking to registries ([`crate::oci::registry`] applies the
//! mirrors) or credentials (auth files, see there).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "EIFBAKE_CONFIG";

/// One registry mirror: requests for images of `from` go to `to` first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    /// The registry as references name it (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub from: String,
    /// The mirror's `host[:port]`.
    pub to_host: String,
    /// A repository prefix on the mirror (`dockerhub` for `harbor.lan/dockerhub`), if any.
    pub to_prefix: Option<String>,
}

/// Why a mirror is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("registry mirror {input:?}: {why}")]
pub struct MirrorError {
    input: String,
    why: String,
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && !h.starts_with(['.', '-', ':'])
}

impl Mirror {
    /// A mirror of `from` at `to` (`host[:port][/prefix]`).
    pub fn new(from: &str, to: &str) -> Result<Mirror, MirrorError> {
        let input = format!("{from}={to}");
        let err = |why: String| MirrorError { input: input.clone(), why };
        let from = match from.trim_end_matches('/') {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            f => f,
        };
        if !valid_host(from) {
            return Err(err(format!(
                "from {from:?} must be a registry host[:port], as image references name it"
            )));
        }
        let (to_host, prefix) = match to.trim_end_matches('/').split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (to.trim_end_matches('/'), None),
        };
        if !valid_host(to_host) {
            return Err(err(format!(
                "to {to:?} must be host[:port], optionally followed by /a/repository/prefix"
            )));
        }
        if let Some(p) = prefix {
            let ok = p.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
            if !ok {
                return Err(err(format!(
                    "repository prefix {p:?} must be lowercase letters, digits, '.', '_', '-' between '/'"
                )));
            }
        }
        Ok(Mirror {
            from: from.to_string(),
            to_host: to_host.to_string(),
            to_prefix: prefix.map(str::to_string),
        })
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.from, self.to_host)?;
        if let Some(p) = &self.to_prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl FromStr for Mirror {
    type Err = MirrorError;
    /// `FROM=TO`, as `--registry-mirror` takes it.
    fn from_str(s: &str) -> Result<Mirror, MirrorError> {
        match s.split_once('=') {
            Some((from, to)) => Mirror::new(from, to),
            None => Err(MirrorError {
                input: s.to_string(),
                why: "expected FROM=TO (e.g. docker.io=127.0.0.1:5000)".into(),
            }),
        }
    }
}

/// A `[[registry.mirror]]` table as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorEntry {
    from: String,
    to: String,
}

impl<'de> Deserialize<'de> for Mirror {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = MirrorEntry::deserialize(d)?;
        Mirror::new(&e.from, &e.to).map_err(serde::de::Error::custom)
    }
}

/// The config file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub cargo: CargoConfig,
}

/// The download URL of crates.io's `.crate` files, cargo's markers unexpanded.
pub const CRATES_IO_DOWNLOAD: &str = "https://static.crates.io/crates/{crate}/{crate}-{version}.crate";

/// `[cargo]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoConfig {
    /// Where `.crate` files are downloaded from instead of [`CRATES_IO_DOWNLOAD`].
    #[serde(default, deserialize_with = "download_template")]
    pub download: Option<String>,
}

impl CargoConfig {
    /// The download URL template in use.
    pub fn download_template(&self) -> &str {
        self.download.as_deref().unwrap_or(CRATES_IO_DOWNLOAD)
    }
}

/// An http(s) or file URL naming each crate by `{crate}` and `{version}`
/// or by `{sha256-checksum}`.
fn download_template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let t = String::deserialize(d)?;
    let scheme = ["https://", "http://", "file://"].iter().any(|s| t.starts_with(s));
    let names = (t.contains("{crate}") && t.contains("{version}")) || t.contains("{sha256-checksum}");
    if !scheme || !names {
        return Err(serde::de::Error::custom(format!(
            "cargo.download = {t:?}: expected an https://, http:// or file:// URL containing \
             {{crate}} and {{version}} (or {{sha256-checksum}}), e.g. {CRATES_IO_DOWNLOAD:?}"
        )));
    }
    Ok(Some(t))
}

/// `[registry]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `[[registry.mirror]]` tables, in order.
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

impl Config {
    /// Parse config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
            .with_context(|| format!("invalid eifbake config file {}", path.display()))
    }

    /// The config file in use, if any: `$EIFBAKE_CONFIG` (which must exist), else
    /// `~/.config/eifbake/config.toml` when present.
    pub fn path() -> Result<Option<PathBuf>> {
        if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!(
                    "${CONFIG_ENV} names {}, which is not a file; create it or unset {CONFIG_ENV}",
                    p.display()
                );
            }
            return Ok(Some(p));
        }
        Ok(dirs::config_dir().map(|d| d.join("eifbake/config.toml")).filter(|p| p.is_file()))
    }

    /// Load the config file in use, or the empty config when there is none.
    pub fn load() -> Result<Config> {
        match Config::path()? {
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read eifbake config file {}", p.display()))?;
                Config::parse(&text, &p)
            }
            None => Ok(Config::default()),
        }
    }
}

/// The mirrors to use: those given on the command line, then the config file's.
pub fn mirrors(command_line: &[Mirror]) -> Result<Vec<Mirror>> {
    let mut all = command_line.to_vec();
    all.extend(Config::load()?.registry.mirror);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_parse_and_refuse_malformed() {
        let m: Mirror = "docker.io=127.0.0.1:5000".parse().unwrap();
        assert_eq!((m.from.as_str(), m.to_host.as_str(), m.to_prefix), ("docker.io", "127.0.0.1:5000", None));
        let m: Mirror = "index.docker.io=harbor.lan/dockerhub/".parse().unwrap();
        assert_eq!((m.from.as_str(), m.to_prefix.as_deref()), ("docker.io", Some("dockerhub")));
        assert_eq!(m.to_string(), "docker.io=harbor.lan/dockerhub");
        for bad in ["docker.io", "=x", "docker.io=", "a/b=c", "x=h/Upper", "x=h//p"] {
            let e = bad.parse::<Mirror>().unwrap_err().to_string();
            assert!(e.contains("registry mirror"), "{bad}: {e}");
        }
    }

    #[test]
    fn config_file_is_strict_and_names_itself() {
        let p = Path::new("/etc/eifbake.toml");
        let c = Config::parse(
            "[[registry.mirror]]\nfrom = \"quay.io\"\nto = \"localhost:5001\"\n\n\
             [[registry.mirror]]\nfrom = \"docker.io\"\nto = \"127.0.0.1:5000/hub\"\n",
            p,
        )
        .unwrap();
        assert_eq!(c.registry.mirror.len(), 2);
        assert_eq!(c.registry.mirror[1].to_string(), "docker.io=127.0.0.1:5000/hub");
        let e = format!(
            "{:#}",
            Config::parse("[[registry.mirror]]\nfrom = \"x\"\nto = \"y\"\nvia = 1\n", p).unwrap_err()
        );
        assert!(e.contains("/etc/eifbake.toml") && e.contains("unknown field `via`"), "{e}");
        let c = Config::parse("[cargo]\ndownload = \"http://127.0.0.1:1/c/{crate}-{version}\"\n", p).unwrap();
        assert_eq!(c.cargo.download_template(), "http://127.0.0.1:1/c/{crate}-{version}");
        assert_eq!(Config::default().cargo.download_template(), CRATES_IO_DOWNLOAD);
        let e = format!("{:#}", Config::parse("[cargo]\ndownload = \"ftp://x/{crate}\"\n", p).unwrap_err());
        assert!(e.contains("/etc/eifbake.toml") && e.contains("cargo.download = \"ftp://x/{crate}\""), "{e}");
        let e = format!("{:#}", Config::parse("[registry]\nmirrors = []\n", p).unwrap_err());
        assert!(e.contains("unknown field `mirrors`"), "{e}");
        let e =
            format!("{:#}", Config::parse("[[registry.mirror]]\nfrom = \"x\"\nto = \"\"\n", p).unwrap_err());
        assert!(e.contains("registry mirror") && e.contains("host[:port]"), "{e}");
    }
}
