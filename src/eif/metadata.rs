//! The metadata section (type 5): a JSON object in AWS's shape and key order.
//!
//! AWS serialises `EifIdentityInfo` compactly with the keys `ImageName`,
//! `ImageVersion`, `BuildMetadata` {`BuildTime`, `BuildTool`,
//! `BuildToolVersion`, `OperatingSystem`, `KernelVersion`}, `DockerInfo`,
//! `CustomMetadata`. Struct field order fixes the key order here; the build
//! time comes from SOURCE_DATE_EPOCH, never from the clock.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::epoch::Epoch;

/// What AWS's reader shows for a field it could not determine.
const UNKNOWN: &str = "Unknown";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    #[serde(rename = "BuildTime")]
    pub build_time: String,
    #[serde(rename = "BuildTool")]
    pub build_tool: String,
    #[serde(rename = "BuildToolVersion")]
    pub build_tool_version: String,
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(rename = "ImageName")]
    pub image_name: String,
    #[serde(rename = "ImageVersion")]
    pub image_version: String,
    #[serde(rename = "BuildMetadata")]
    pub build: BuildInfo,
    /// Always null: eifbake uses no Docker daemon.
    #[serde(rename = "DockerInfo")]
    pub docker_info: serde_json::Value,
    /// A JSON object (the build's inputs manifest), or null.
    #[serde(rename = "CustomMetadata")]
    pub custom: serde_json::Value,
}

impl Metadata {
    /// Metadata for an image built by this eifbake at `epoch`.
    /// `custom` must be a JSON object when given.
    pub fn new(
        name: &str,
        version: &str,
        epoch: Epoch,
        kernel_config: Option<&Path>,
        custom: Option<serde_json::Value>,
    ) -> Result<Self> {
        let (os, kernel) = match kernel_config {
            Some(p) => kernel_info_from_config(p)?,
            None => (UNKNOWN.to_string(), UNKNOWN.to_string()),
        };
        let custom = match custom {
            None => serde_json::Value::Null,
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(other) => bail!("custom metadata must be a JSON object, found {}", json_kind(&other)),
        };
        Ok(Metadata {
            image_name: name.to_string(),
            image_version: version.to_string(),
            build: BuildInfo {
                build_time: build_time(epoch),
                build_tool: "eifbake".into(),
                build_tool_version: env!("CARGO_PKG_VERSION").into(),
                operating_system: os,
                kernel_version: kernel,
            },
            docker_info: serde_json::Value::Null,
            custom,
        })
    }

    /// The section bytes: compact JSON, keys in AWS's order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serialises")
    }
}

/// Parse `--metadata` text as the CustomMetadata object.
pub fn parse_custom(text: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(text).context("--metadata is not valid JSON (expected a JSON object)")?;
    if !v.is_object() {
        bail!("--metadata must be a JSON object, found {}", json_kind(&v));
    }
    Ok(v)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// BuildTime as AWS writes it (chrono's `to_rfc3339` for UTC: `…T00:00:01+00:00`).
pub fn build_time(epoch: Epoch) -> String {
    let z = epoch.rfc3339();
    format!("{}+00:00", z.strip_suffix('Z').unwrap_or(&z))
}

/// Operating system and kernel version from a kernel config, read the way AWS
/// does: its third line (`# Linux/x86_64 6.1.0 Kernel Configuration`) split on
/// space, `/` and `-`; words 1 and 3, "Unknown" when missing.
pub fn kernel_info_from_config(path: &Path) -> Result<(String, String)> {
    let f = File::open(path).with_context(|| format!("cannot open kernel config {}", path.display()))?;
    let mut lines = BufReader::new(f).lines();
    let third = match lines.nth(2) {
        Some(l) => l.with_context(|| format!("reading kernel config {}", path.display()))?,
        None => bail!(
            "kernel config {}: has fewer than 3 lines; expected the third to be \
             `# Linux/<arch> <version> Kernel Configuration`",
            path.display()
        ),
    };
    let words: Vec<&str> = third.split([' ', '/', '-']).collect();
    let word = |i: usize| words.get(i).copied().unwrap_or(UNKNOWN).to_string();
    Ok((word(1), word(3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_aws_key_order() {
        let custom = parse_custom(r#"{"z":1,"a":{"b":2}}"#).unwrap();
        let m = Metadata::new("hello", "0.1.0", Epoch(1), None, Some(custom)).unwrap();
        let s = String::from_utf8(m.to_bytes()).unwrap();
        let expected = format!(
            concat!(
                r#"{{"ImageName":"hello","ImageVersion":"0.1.0","BuildMetadata":{{"BuildTime":"1970-01-01T00:00:01+00:00","#,
                r#""BuildTool":"eifbake","BuildToolVersion":"{}","OperatingSystem":"Unknown","KernelVersion":"Unknown"}},"#,
                r#""DockerInfo":null,"CustomMetadata":{{"z":1,"a":{{"b":2}}}}}}"#
            ),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(s, expected);
        let back: Metadata = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn custom_must_be_an_object() {
        assert!(parse_custom("[1]").unwrap_err().to_string().contains("an array"));
        assert!(parse_custom("{").is_err());
        let e = Metadata::new("n", "v", Epoch(0), None, Some(serde_json::json!("s"))).unwrap_err();
        assert!(e.to_string().contains("a string"));
    }

    #[test]
    fn reads_kernel_config_like_aws() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("linux.config");
        std::fs::write(
            &p,
            "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.12.20-nitro Kernel Configuration\n#\n",
        )
        .unwrap();
        assert_eq!(kernel_info_from_config(&p).unwrap(), ("Linux".into(), "6.12.20".into()));
        std::fs::write(&p, "#\n#\n# Linux\n").unwrap();
        assert_eq!(kernel_info_from_config(&p).unwrap(), ("Linux".into(), "Unknown".into()));
        std::fs::write(&p, "#\n").unwrap();
        assert!(kernel_info_from_config(&p).unwrap_err().to_string().contains("fewer than 3 lines"));
    }
}
