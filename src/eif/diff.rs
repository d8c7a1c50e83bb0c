//! What differs between two EIFs: header fields, CRC status, PCRs, sections
//! (by size and SHA-256), metadata keys, the signature (signing certificate
//! and whether it checks), and for ramdisks the cpio entries added, removed
//! or changed (content, mode, owner, mtime, size, link target).
//!
//! Not for: parsing cpio (that is [`crate::cpio`]'s reader) or printing (the
//! `diff` command renders the [`EifDiff`] this module returns).
//!
//! Memory stays bounded whatever the inputs (long names, many entries,
//! unsorted archives, large files): see the `entries` submodule for the
//! limits ([`LIST_BUDGET`], [`UNSORTED_BUDGET`], [`DETAIL_FILES`]) and
//! [`LCS_CELLS`] for text details.

use anyhow::{Context, Result};
use serde::Serialize;

mod entries;

pub use entries::{diff_entries, DETAIL_FILES, LIST_BUDGET, UNSORTED_BUDGET};

use super::{Eif, Section, SectionKind, Verification};
use crate::cpio::Kind;
use crate::digest::Digest;
use crate::progress::Progress;

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
    /// For regular files whose contents differ: how (see [`content_detail`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How much of each side's file [`content_detail`] reads.
pub const DETAIL_LIMIT: u64 = 64 * 1024;

/// Most cells of the line table [`unified`] fills (4 bytes each): texts
/// with more lines than that get the hex window, so memory stays bounded.
pub const LCS_CELLS: usize = 1 << 22;

/// How two versions of a file differ, for a person: a unified line diff
/// when both are text (UTF-8 without NUL), at most [`DETAIL_LIMIT`]
/// bytes and the product of their line counts at most [`LCS_CELLS`], else a hex window around the first differing byte (looked for in
/// the first [`DETAIL_LIMIT`] bytes of each side; `a_len`/`b_len` are the
/// full sizes).
pub fn content_detail(a: &[u8], b: &[u8], a_len: u64, b_len: u64) -> String {
    let whole = a_len == a.len() as u64 && b_len == b.len() as u64;
    let text = |x: &[u8]| !x.contains(&0) && std::str::from_utf8(x).is_ok();
    let lines = |x: &[u8]| x.iter().filter(|&&c| c == b'\n').count() + 1;
    if whole && text(a) && text(b) && lines(a).saturating_mul(lines(b)) <= LCS_CELLS {
        let (ta, tb) = (std::str::from_utf8(a).unwrap_or(""), std::str::from_utf8(b).unwrap_or(""));
        return unified(ta, tb);
    }
    let n = a.len().min(b.len());
    let Some(first) = (0..n).find(|&i| a[i] != b[i]) else {
        if a.len() != b.len() && whole {
            return format!("one is a prefix of the other: equal up to byte {n}, sizes {a_len} and {b_len}");
        }
        return format!("the first {n} bytes are equal; the difference lies further on");
    };
    let start = first.saturating_sub(16) & !15;
    let window = |x: &[u8]| -> String {
        let end = (start + 48).min(x.len());
        let mut out = String::new();
        for row in (start..end).step_by(16) {
            let bytes = &x[row..(row + 16).min(end)];
            let hexes: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let chars: String =
                bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
            out.push_str(&format!("  {row:08x}  {:<47}  |{chars}|\n", hexes.join(" ")));
        }
        out
    };
    format!("first differing byte at offset {first} (0x{first:x})\n--- a\n{}+++ b\n{}", window(a), window(b))
}

/// A unified diff of two texts, three lines of context, one hunk per
/// group of changes (longest common subsequence; inputs are small).
fn unified(a: &str, b: &str) -> String {
    let la: Vec<&str> = a.split_inclusive('\n').collect();
    let lb: Vec<&str> = b.split_inclusive('\n').collect();
    let (n, m) = (la.len(), lb.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if la[i] == lb[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // The edit script: (' '|'-'|'+', line, index in a, index in b).
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && la[i] == lb[j] {
            ops.push((' ', la[i], i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', la[i], i, j));
            i += 1;
        } else {
            ops.push(('+', lb[j], i, j));
            j += 1;
        }
    }
    let mut out = String::from("--- a\n+++ b\n");
    let mut k = 0;
    while k < ops.len() {
        if ops[k].0 == ' ' {
            k += 1;
            continue;
        }
        let start = k.saturating_sub(3);
        let mut end = k;
        while end < ops.len() {
            if ops[end].0 != ' ' {
                end += 1;
                continue;
            }
            let run = ops[end..].iter().take_while(|o| o.0 == ' ').count();
            if end + run >= ops.len() || run > 6 {
                end = (end + run.min(3)).min(ops.len());
                break;
            }
            end += run;
        }
        let hunk = &ops[start..end];
        let (ca, cb) =
            (hunk.iter().filter(|o| o.0 != '+').count(), hunk.iter().filter(|o| o.0 != '-').count());
        let (sa, sb) = (hunk[0].2 + usize::from(ca > 0), hunk[0].3 + usize::from(cb > 0));
        out.push_str(&format!("@@ -{sa},{ca} +{sb},{cb} @@\n"));
        for (op, line, _, _) in hunk {
            out.push(*op);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        k = end;
    }
    out
}

/// Entry-level differences of one ramdisk pair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EntryDiff {
    pub added: Vec<RamdiskEntry>,
    pub removed: Vec<RamdiskEntry>,
    pub changed: Vec<EntryChange>,
    /// Same entries, same fields, but in another order in the archive.
    pub order_differs: bool,
    /// Differing entries (added, removed or changed) past the listing limit
    /// ([`LIST_BUDGET`]), counted but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub unlisted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl EntryDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.order_differs
            && self.unlisted == 0
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
    /// The signing certificate and the signature check, when they differ.
    pub signature: Vec<Change>,
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
                match entries::compare_entries((a, &a.sections[i]), (b, &b.sections[i])) {
                    Ok((entries, detail_error)) => {
                        d.entries = Some(entries);
                        d.entries_error = detail_error;
                    }
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

    let mut signature = Vec::new();
    let cert = |v: &Verification| match &v.signature {
        None => "(unsigned)".to_string(),
        Some(r) => match &r.certificate {
            Some(c) => format!("{} (sha256 {})", c.subject, c.sha256_fingerprint),
            None => "(unreadable)".to_string(),
        },
    };
    let check = |v: &Verification| match &v.signature {
        None => "(unsigned)".to_string(),
        Some(r) if r.valid => "valid".to_string(),
        Some(r) => format!("INVALID: {}", r.problem.as_deref().unwrap_or("unknown reason")),
    };
    push_if(&mut signature, "signing certificate", cert(&va), cert(&vb));
    push_if(&mut signature, "signature check", check(&va), check(&vb));

    let same = header.is_empty()
        && pcrs.is_empty()
        && sections.is_empty()
        && metadata.is_empty()
        && signature.is_empty();
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
        signature,
    })
}

fn summarise(eif: &Eif, s: &Section) -> Result<SectionSummary> {
    let (sha256, _) = Digest::of_reader(eif.section_reader(s))
        .with_context(|| format!("{}: reading section {} ({})", eif.path().display(), s.index, s.kind))?;
    Ok(SectionSummary { kind: s.kind, offset: s.offset, size: s.size, sha256 })
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
    fn text_files_get_a_unified_diff() {
        let a = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";
        let b = "one\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\nnine\nten\neleven\n";
        let d = content_detail(a.as_bytes(), b.as_bytes(), a.len() as u64, b.len() as u64);
        // Changes 5 lines apart share a hunk (as GNU diff -u merges gaps up to 6).
        assert_eq!(
            d,
            "--- a\n+++ b\n@@ -2,9 +2,10 @@\n two\n three\n four\n-five\n+FIVE\n six\n seven\n eight\n nine\n ten\n\
             +eleven\n"
        );
        let a: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let b = a.replace("\n2\n", "\nTWO\n").replace("\n19\n", "\n").replace("20\n", "20");
        let d = content_detail(a.as_bytes(), b.as_bytes(), a.len() as u64, b.len() as u64);
        assert_eq!(
            d,
            "--- a\n+++ b\n@@ -1,5 +1,5 @@\n 1\n-2\n+TWO\n 3\n 4\n 5\n@@ -16,5 +16,4 @@\n 16\n 17\n 18\n-19\n\
             -20\n+20\n\\ No newline at end of file\n"
        );
    }

    /// Texts with very many lines would need a line table of n * m cells
    /// (here 32769^2 * 4 bytes, 4 GiB): they get the hex window instead.
    #[test]
    fn many_line_texts_do_not_build_a_huge_table() {
        let a = vec![b'\n'; 32 * 1024];
        let mut b = a.clone();
        b[20_000] = b'x';
        let started = std::time::Instant::now();
        let d = content_detail(&a, &b, a.len() as u64, b.len() as u64);
        assert!(d.starts_with("first differing byte at offset 20000 (0x4e20)\n"), "{d}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Up to the limit, texts still get a unified diff.
        let a: String = (0..2000).map(|i| format!("{i}\n")).collect();
        let b = a.replace("\n1000\n", "\nthousand\n");
        let d = content_detail(a.as_bytes(), b.as_bytes(), a.len() as u64, b.len() as u64);
        assert!(d.contains("\n-1000\n+thousand\n"), "{d}");
    }

    #[test]
    fn binary_files_get_a_hex_window() {
        let mut a = vec![0u8; 100];
        let mut b = a.clone();
        a[40] = 1;
        b[40] = 2;
        let d = content_detail(&a, &b, 100, 100);
        assert!(d.starts_with("first differing byte at offset 40 (0x28)\n--- a\n  00000010  "), "{d}");
        assert!(d.contains("\n  00000020  00 00 00 00 00 00 00 00 01 00"), "{d}");
        assert!(d.contains("\n  00000020  00 00 00 00 00 00 00 00 02 00"), "{d}");
        // Only prefixes read and they agree: say so instead of guessing.
        let d = content_detail(&a[..10], &b[..10], 100, 100);
        assert_eq!(d, "the first 10 bytes are equal; the difference lies further on");
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
