//! What differs between two EIFs: header fields, CRC status, PCRs, sections
//! (by size and SHA-256), metadata keys, and for ramdisks the cpio entries
//! added, removed or changed (content, mode, owner, mtime, size, link target).
//!
//! Not for: parsing cpio (that is [`crate::cpio`]'s reader) or printing (the
//! `diff` command renders the [`EifDiff`] this module returns).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Eif, Section, SectionKind, Verification};
use crate::cpio::{self, Kind};
use crate::digest::Digest;
use crate::progress::Progress;

/// Longest symlink target read from a ramdisk.
const LINK_LIMIT: u64 = 4096;

/// A field that differs: its name and both values, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub a: String,
    pub b: String,
}

impl Change {
    fn new(field: impl Into<String>, a: impl ToString, b: impl ToString) -> Self {
        Change { field: field.into(), a: a.to_string(), b: b.to_string() }
    }
}

fn push_if<T: PartialEq + ToString>(out: &mut Vec<Change>, field: &str, a: T, b: T) {
    if a != b {
        out.push(Change::new(field, a.to_string(), b.to_string()));
    }
}

/// One section of either side, summarised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionSummary {
    pub kind: SectionKind,
    pub offset: u64,
    pub size: u64,
    pub sha256: Digest,
}

/// A section position whose contents differ (or that exists on one side only).
#[derive(Clone, Debug, Serialize)]
pub struct SectionDiff {
    pub index: usize,
    pub a: Option<SectionSummary>,
    pub b: Option<SectionSummary>,
    /// For ramdisks present on both sides and readable as cpio: the entry changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<EntryDiff>,
    /// Why the entries could not be compared, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries_error: Option<String>,
}

/// One ramdisk entry, as compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RamdiskEntry {
    pub path: String,
    pub kind: Kind,
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub size: u32,
    pub sha256: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdev: Option<String>,
}

/// An entry present on both sides whose fields differ.
#[derive(Clone, Debug, Serialize)]
pub struct EntryChange {
    pub path: String,
    pub changes: Vec<Change>,
}

/// Entry-level differences of one ramdisk pair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EntryDiff {
    pub added: Vec<RamdiskEntry>,
    pub removed: Vec<RamdiskEntry>,
    pub changed: Vec<EntryChange>,
    /// Same entries, same fields, but in another order in the archive.
    pub order_differs: bool,
}

impl EntryDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && !self.order_differs
    }
}

/// CRC status of one side.
#[derive(Clone, Debug, Serialize)]
pub struct CrcStatus {
    pub stored: String,
    pub computed: String,
    pub ok: bool,
}

impl From<&Verification> for CrcStatus {
    fn from(v: &Verification) -> Self {
        CrcStatus {
            stored: format!("{:08x}", v.stored_crc),
            computed: format!("{:08x}", v.computed_crc),
            ok: v.crc_ok(),
        }
    }
}

/// Everything that differs between two EIFs.
#[derive(Clone, Debug, Serialize)]
pub struct EifDiff {
    pub a: String,
    pub b: String,
    pub same: bool,
    pub header: Vec<Change>,
    pub crc_a: CrcStatus,
    pub crc_b: CrcStatus,
    pub pcrs: Vec<Change>,
    pub sections: Vec<SectionDiff>,
    pub metadata: Vec<Change>,
}

/// Compare two opened EIFs (a CRC mismatch on either side is reported, not fatal).
pub fn compare(a: &Eif, b: &Eif, progress: &Progress) -> Result<EifDiff> {
    let va = a.verify(progress)?;
    let vb = b.verify(progress)?;
    let (ha, hb) = (&a.header, &b.header);
    let mut header = Vec::new();
    push_if(&mut header, "version", ha.version, hb.version);
    push_if(&mut header, "flags", format!("{:#06x}", ha.flags), format!("{:#06x}", hb.flags));
    push_if(&mut header, "default_mem", ha.default_mem, hb.default_mem);
    push_if(&mut header, "default_cpus", ha.default_cpus, hb.default_cpus);
    push_if(&mut header, "reserved", ha.reserved, hb.reserved);
    push_if(&mut header, "num_sections", ha.num_sections, hb.num_sections);
    push_if(&mut header, "unused", ha.unused, hb.unused);
    push_if(&mut header, "eif_crc32", format!("{:08x}", ha.crc32), format!("{:08x}", hb.crc32));
    push_if(&mut header, "file_size", a.len, b.len);

    let mut pcrs = Vec::new();
    let (ma, mb) = (&va.measurements, &vb.measurements);
    push_if(&mut pcrs, "PCR0", ma.pcr0.hex(), mb.pcr0.hex());
    push_if(&mut pcrs, "PCR1", ma.pcr1.hex(), mb.pcr1.hex());
    push_if(&mut pcrs, "PCR2", ma.pcr2.hex(), mb.pcr2.hex());
    let opt = |p: Option<crate::pcr::Pcr>| p.map(|p| p.hex()).unwrap_or_else(|| "(unsigned)".into());
    push_if(&mut pcrs, "PCR8", opt(ma.pcr8), opt(mb.pcr8));

    let mut sections = Vec::new();
    for i in 0..a.sections.len().max(b.sections.len()) {
        let sa = a.sections.get(i).map(|s| summarise(a, s)).transpose()?;
        let sb = b.sections.get(i).map(|s| summarise(b, s)).transpose()?;
        if sa == sb {
            continue;
        }
        let mut d =
            SectionDiff { index: i, a: sa.clone(), b: sb.clone(), entries: None, entries_error: None };
        if let (Some(x), Some(y)) = (&sa, &sb) {
            if x.kind == SectionKind::Ramdisk && y.kind == SectionKind::Ramdisk {
                let listed =
                    list_entries(a, &a.sections[i]).and_then(|ea| Ok((ea, list_entries(b, &b.sections[i])?)));
                match listed {
                    Ok((ea, eb)) => d.entries = Some(diff_entries(&ea, &eb)),
                    Err(e) => d.entries_error = Some(format!("{e:#}")),
                }
            }
        }
        sections.push(d);
    }

    let metadata = match (a.metadata_json(), b.metadata_json()) {
        (Ok(x), Ok(y)) => diff_json("", &x.unwrap_or_default(), &y.unwrap_or_default()),
        (x, y) => {
            let show = |r: Result<Option<serde_json::Value>>| match r {
                Ok(_) => "valid".to_string(),
                Err(e) => format!("{e:#}"),
            };
            vec![Change::new("metadata", show(x), show(y))]
        }
    };

    let same = header.is_empty() && pcrs.is_empty() && sections.is_empty() && metadata.is_empty();
    Ok(EifDiff {
        a: a.path().display().to_string(),
        b: b.path().display().to_string(),
        same,
        header,
        crc_a: (&va).into(),
        crc_b: (&vb).into(),
        pcrs,
        sections,
        metadata,
    })
}

fn summarise(eif: &Eif, s: &Section) -> Result<SectionSummary> {
    let (sha256, _) = Digest::of_reader(eif.section_reader(s))
        .with_context(|| format!("{}: reading section {} ({})", eif.path().display(), s.index, s.kind))?;
    Ok(SectionSummary { kind: s.kind, offset: s.offset, size: s.size, sha256 })
}

/// Every entry of a ramdisk section (plain or gzip newc), in archive order.
pub fn list_entries(eif: &Eif, s: &Section) -> Result<Vec<RamdiskEntry>> {
    let ctx = || format!("{}: section {} (ramdisk) as a cpio archive", eif.path().display(), s.index);
    let mut r = cpio::Reader::new(eif.section_reader(s)).with_context(ctx)?;
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().with_context(ctx)? {
        let kind = e.kind();
        let (sha256, link_target) = if kind == Kind::Symlink {
            let t = r.data_to_vec(LINK_LIMIT).with_context(ctx)?;
            (Digest::of(&t), Some(String::from_utf8_lossy(&t).into_owned()))
        } else {
            (r.data_sha256().with_context(ctx)?, None)
        };
        let rdev = matches!(kind, Kind::CharDevice | Kind::BlockDevice)
            .then(|| format!("{}:{}", e.rdevmajor, e.rdevminor));
        out.push(RamdiskEntry {
            path: e.name_lossy().into_owned(),
            kind,
            mode: format!("{:o}", e.mode),
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            size: e.size,
            sha256,
            link_target,
            rdev,
        });
    }
    Ok(out)
}

/// Compare two entry lists by path.
pub fn diff_entries(a: &[RamdiskEntry], b: &[RamdiskEntry]) -> EntryDiff {
    let ma: BTreeMap<&str, &RamdiskEntry> = a.iter().map(|e| (e.path.as_str(), e)).collect();
    let mb: BTreeMap<&str, &RamdiskEntry> = b.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut d = EntryDiff::default();
    for (p, ea) in &ma {
        match mb.get(p) {
            None => d.removed.push((*ea).clone()),
            Some(eb) => {
                let mut c = Vec::new();
                push_if(&mut c, "type", format!("{:?}", ea.kind), format!("{:?}", eb.kind));
                push_if(&mut c, "content sha256", ea.sha256, eb.sha256);
                push_if(&mut c, "size", ea.size, eb.size);
                push_if(&mut c, "mode", &ea.mode, &eb.mode);
                push_if(&mut c, "uid", ea.uid, eb.uid);
                push_if(&mut c, "gid", ea.gid, eb.gid);
                push_if(&mut c, "mtime", ea.mtime, eb.mtime);
                let none = || "(none)".to_string();
                push_if(
                    &mut c,
                    "symlink target",
                    ea.link_target.clone().unwrap_or_else(none),
                    eb.link_target.clone().unwrap_or_else(none),
                );
                push_if(
                    &mut c,
                    "rdev",
                    ea.rdev.clone().unwrap_or_else(none),
                    eb.rdev.clone().unwrap_or_else(none),
                );
                if !c.is_empty() {
                    d.changed.push(EntryChange { path: p.to_string(), changes: c });
                }
            }
        }
    }
    for (p, eb) in &mb {
        if !ma.contains_key(p) {
            d.added.push((*eb).clone());
        }
    }
    if d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty() {
        d.order_differs = a.iter().map(|e| &e.path).ne(b.iter().map(|e| &e.path));
    }
    d
}

/// Leaf-level differences of two JSON values, as dotted paths.
fn diff_json(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Vec<Change> {
    use serde_json::Value;
    let name = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = Vec::new();
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => out.extend(diff_json(&name(k), va, vb)),
                    None => out.push(Change::new(name(k), va, "(absent)")),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(Change::new(name(k), "(absent)", vb));
                }
            }
            out
        }
        _ if a == b => Vec::new(),
        _ => vec![Change::new(if path.is_empty() { "metadata" } else { path }, a, b)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: &str, data: &[u8]) -> RamdiskEntry {
        RamdiskEntry {
            path: path.into(),
            kind: Kind::File,
            mode: mode.into(),
            uid: 0,
            gid: 0,
            mtime: 1,
            size: data.len() as u32,
            sha256: Digest::of(data),
            link_target: None,
            rdev: None,
        }
    }

    #[test]
    fn entries_added_removed_changed() {
        let a = vec![entry("a", "100644", b"x"), entry("b", "100644", b"y"), entry("c", "100755", b"z")];
        let b = vec![entry("a", "100644", b"x"), entry("b", "100755", b"y"), entry("d", "100644", b"w")];
        let d = diff_entries(&a, &b);
        assert_eq!(d.removed.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(d.added.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].path, "b");
        assert_eq!(d.changed[0].changes, vec![Change::new("mode", "100644", "100755")]);
        assert!(!d.order_differs);
        let mut rev = a.clone();
        rev.reverse();
        let o = diff_entries(&a, &rev);
        assert!(o.order_differs && !o.is_empty());
        assert!(diff_entries(&a, &a).is_empty());
    }

    #[test]
    fn json_leaves() {
        let a = serde_json::json!({"x": 1, "m": {"t": "a", "k": 2}});
        let b = serde_json::json!({"x": 1, "m": {"t": "b"}, "n": null});
        let d = diff_json("", &a, &b);
        let fields: Vec<_> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["m.t", "m.k", "n"]);
    }
}
