//! OCI image references (`stagex/core-busybox:sx2026.03.0`,
//! `quay.io/stagex/user-nit@sha256:…`, `127.0.0.1:5000/x:y`) as a type.
//!
//! Parsing follows docker's rules for short names: a first path component
//! is a registry host only when it contains a `.` or a `:` or is
//! `localhost`; otherwise the registry is `docker.io`, and single-component
//! names on docker.io live under `library/`. A reference with neither tag nor
//! digest means `:latest`. [`Reference`]'s `Display` gives the fully
//! qualified form, which parses back to the same value.
//!
//! Not for: talking to registries ([`super::registry`]) or naming images in
//! the store ([`super::store`]).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed, fully qualified image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {input:?}: {why}")]
pub struct ReferenceError {
    input: String,
    why: String,
}

const DOCKER_HUB: &str = "docker.io";

impl Reference {
    /// The registry as written in references (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`stagex/core-busybox`, `library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The host to send HTTP requests to: docker.io is served from `registry-1.docker.io`.
    pub fn http_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// True when the registry is on the loopback interface (`localhost`,
    /// `127.0.0.0/8`, `[::1]`), where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }
}

/// True for `localhost`, `127.x.y.z` and `[::1]`, with or without a port.
pub fn host_is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host == "localhost" || host == "::1" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

fn valid_repository(repo: &str) -> bool {
    // Components of lowercase alphanumerics joined by '.', '_', '__' or '-' runs.
    repo.split('/').all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && !host.starts_with(['.', '-', ':'])
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        let err = |why: &str| ReferenceError { input: s.to_string(), why: why.to_string() };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>().map_err(|e| err(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag is a ':' after the last '/', so a registry port is not mistaken for one.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err(&format!(
                    "tag {t:?} must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                )));
            }
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), path.to_string()),
        };
        if !valid_host(&registry) {
            return Err(err(&format!("registry {registry:?} is not a host[:port]")));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(err(&format!(
                "repository {repository:?} must be lowercase letters, digits and '.', '_', '-' between '/'"
            )));
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3d1d534143a4f5612c565c733f2f43985438f5f980f8be98767ba955eae19033";

    fn r(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn short_names_default_to_docker_hub() {
        let x = r("stagex/core-busybox:sx2026.03.0");
        assert_eq!(x.registry(), "docker.io");
        assert_eq!(x.repository(), "stagex/core-busybox");
        assert_eq!(x.tag(), Some("sx2026.03.0"));
        assert_eq!(x.http_host(), "registry-1.docker.io");
        assert_eq!(x.to_string(), "docker.io/stagex/core-busybox:sx2026.03.0");
        let b = r("busybox");
        assert_eq!(b.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("docker.io/busybox:1"), r("library/busybox:1"));
    }

    #[test]
    fn registries_with_ports_and_digests() {
        let x = r(&format!("quay.io/stagex/user-nit@{D}"));
        assert_eq!(x.registry(), "quay.io");
        assert_eq!(x.http_host(), "quay.io");
        assert_eq!(x.tag(), None);
        assert_eq!(x.digest().unwrap().to_string(), D);
        let l = r("localhost:5000/x:y");
        assert_eq!((l.registry(), l.repository(), l.tag()), ("localhost:5000", "x", Some("y")));
        assert!(l.is_loopback());
        let i = r("127.0.0.1:5000/a/b");
        assert_eq!((i.registry(), i.tag()), ("127.0.0.1:5000", Some("latest")));
        assert!(i.is_loopback());
        let both = r(&format!("127.0.0.2:5000/x:y@{D}"));
        assert_eq!((both.tag(), both.digest().is_some()), (Some("y"), true));
        assert!(!r("quay.io/x:y").is_loopback());
        assert!(host_is_loopback("[::1]:5000"));
        assert!(!host_is_loopback("128.0.0.1:5000"));
        assert!(!host_is_loopback("localhost.example.com"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "stagex/core-busybox:sx2026.03.0",
            "busybox",
            "localhost:5000/x:y",
            "127.0.0.1:5000/x/y/z:1.0",
            &format!("quay.io/stagex/user-nit:sx2026.03.0@{D}"),
            &format!("quay.io/stagex/user-nit@{D}"),
        ] {
            let x = r(s);
            assert_eq!(r(&x.to_string()), x, "{s}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "Upper/case:x", "x:", "x:-bad", "x@sha256:00", "a//b", "x@md5:00", "/x"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} accepted");
        }
        let e = "x@sha256:00".parse::<Reference>().unwrap_err().to_string();
        assert!(e.contains("x@sha256:00"), "{e}");
    }
}
