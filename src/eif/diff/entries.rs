//! The entry-level comparison of two ramdisk sections, in bounded memory.
//!
//! For: [`super::compare`]'s `entries` of a [`super::SectionDiff`]: which
//! cpio entries were added, removed or changed, and how changed files differ.
//! Not for: parsing cpio (that is [`crate::cpio`]'s reader).
//!
//! # Memory
//!
//! Peak memory does not grow with the archives, whoever made them:
//!
//! - Both archives are streamed and merged by path, one entry per side in
//!   memory at a time (a name is at most [`crate::cpio::MAX_NAME`] bytes, a
//!   symlink target at most [`LINK_LIMIT`]). eifbake's ramdisks are sorted
//!   by path, so this is the usual case.
//! - An archive that turns out not to be strictly sorted by path (another
//!   tool's, or with duplicate names) is compared again with that side loaded
//!   into a sorted map, the last of duplicate names winning as when the kernel
//!   unpacks it; past [`UNSORTED_BUDGET`] bytes this is an error that names
//!   the section, reported as `entries_error` (the section digests still
//!   show that the sections differ).
//! - The listing keeps at most [`LIST_BUDGET`] bytes of differing entries, in
//!   path order; the others are counted in [`EntryDiff::unlisted`].
//! - Content details ([`super::content_detail`]) are made for at most
//!   [`DETAIL_FILES`] files, from the first [`super::DETAIL_LIMIT`] bytes of each.
//!
//! Invariant: with inputs that fit these limits the result is the same as
//! comparing two complete maps of path to entry.

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::io::Read;

use anyhow::{bail, Context, Result};

use super::{content_detail, push_if, Change, EntryChange, EntryDiff, RamdiskEntry, DETAIL_LIMIT};
use crate::cpio::{self, Kind};
use crate::digest::Digest;
use crate::eif::{Eif, Section};

/// Longest symlink target read from a ramdisk.
const LINK_LIMIT: u64 = 4096;
/// Most bytes of differing entries an [`EntryDiff`] lists.
pub const LIST_BUDGET: usize = 16 << 20;
/// Most bytes of entries held for one ramdisk that is not sorted by path.
pub const UNSORTED_BUDGET: usize = 24 << 20;
/// Most changed files that get a content detail.
pub const DETAIL_FILES: usize = 64;

/// One side: an EIF and one of its ramdisk sections.
type Side<'e> = (&'e Eif, &'e Section);

fn context(side: Side<'_>) -> String {
    format!("{}: section {} (ramdisk) as a cpio archive", side.0.path().display(), side.1.index)
}

fn open(side: Side<'_>) -> Result<cpio::Reader<'_>> {
    let capacity = usize::try_from(side.1.size).unwrap_or(usize::MAX);
    cpio::Reader::with_buffer(side.0.section_reader(side.1), capacity).with_context(|| context(side))
}

/// Read the entry `e` the reader has just returned, digesting its content.
fn read_entry(r: &mut cpio::Reader<'_>, e: &cpio::Entry) -> Result<RamdiskEntry, cpio::CpioError> {
    let kind = e.kind();
    let (sha256, link_target) = if kind == Kind::Symlink {
        let t = r.data_to_vec(LINK_LIMIT)?;
        (Digest::of(&t), Some(String::from_utf8_lossy(&t).into_owned()))
    } else {
        (r.data_sha256()?, None)
    };
    let rdev = matches!(kind, Kind::CharDevice | Kind::BlockDevice)
        .then(|| format!("{}:{}", e.rdevmajor, e.rdevminor));
    Ok(RamdiskEntry {
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
    })
}

/// Roughly what an entry costs in memory.
fn entry_cost(e: &RamdiskEntry) -> usize {
    std::mem::size_of::<RamdiskEntry>()
        + e.path.len()
        + e.mode.len()
        + e.link_target.as_ref().map_or(0, String::len)
        + e.rdev.as_ref().map_or(0, String::len)
}

/// What an entry source gives next.
enum Next {
    Entry(RamdiskEntry),
    End,
    /// The archive is not strictly sorted by path: compare it from memory.
    Unsorted,
}

/// Entries in path order.
enum Entries<'e> {
    /// Straight from the archive, checked to be strictly increasing by path.
    Stream { reader: cpio::Reader<'e>, side: Side<'e>, last: Option<String> },
    /// Loaded and sorted in memory.
    Sorted(btree_map::IntoValues<String, RamdiskEntry>),
}

impl Entries<'_> {
    fn next(&mut self) -> Result<Next> {
        match self {
            Entries::Sorted(it) => Ok(it.next().map_or(Next::End, Next::Entry)),
            Entries::Stream { reader, side, last } => {
                let Some(e) = reader.next_entry().with_context(|| context(*side))? else {
                    return Ok(Next::End);
                };
                let entry = read_entry(reader, &e).with_context(|| context(*side))?;
                if last.as_ref().is_some_and(|l| *l >= entry.path) {
                    return Ok(Next::Unsorted);
                }
                *last = Some(entry.path.clone());
                Ok(Next::Entry(entry))
            }
        }
    }
}

/// Every entry of `side` in a map by path (the last of equal names wins),
/// within [`UNSORTED_BUDGET`].
fn load_sorted(side: Side<'_>) -> Result<Entries<'_>> {
    let mut r = open(side)?;
    let mut map = BTreeMap::new();
    let mut bytes = 0;
    while let Some(e) = r.next_entry().with_context(|| context(side))? {
        let entry = read_entry(&mut r, &e).with_context(|| context(side))?;
        // The key, and the map's and the allocator's overhead.
        bytes += entry_cost(&entry) + entry.path.len() + 160;
        if bytes > UNSORTED_BUDGET {
            bail!(
                "{}: section {} (ramdisk): its entries are not sorted by path and need more than {} MiB \
                 to compare in memory; the section digests above differ, unpack both with `cpio -i` to \
                 compare their files",
                side.0.path().display(),
                side.1.index,
                UNSORTED_BUDGET >> 20
            );
        }
        map.insert(entry.path.clone(), entry);
    }
    Ok(Entries::Sorted(map.into_values()))
}

/// The differences found so far, within [`LIST_BUDGET`].
#[derive(Default)]
struct Listing {
    diff: EntryDiff,
    bytes: usize,
    full: bool,
    /// Changed regular files to describe: path, size on each side.
    details: Vec<(String, u64, u64)>,
}

impl Listing {
    /// Whether a difference of `cost` bytes is listed (else it is counted).
    fn keep(&mut self, cost: usize) -> bool {
        if self.full || self.bytes + cost > LIST_BUDGET {
            self.full = true;
            self.diff.unlisted += 1;
            return false;
        }
        self.bytes += cost;
        true
    }

    fn removed(&mut self, e: RamdiskEntry) {
        if self.keep(entry_cost(&e)) {
            self.diff.removed.push(e);
        }
    }

    fn added(&mut self, e: RamdiskEntry) {
        if self.keep(entry_cost(&e)) {
            self.diff.added.push(e);
        }
    }

    fn compare(&mut self, a: RamdiskEntry, b: RamdiskEntry) {
        let changes = field_changes(&a, &b);
        if changes.is_empty() {
            return;
        }
        let cost =
            a.path.len() + changes.iter().map(|c| 64 + c.field.len() + c.a.len() + c.b.len()).sum::<usize>();
        if !self.keep(cost) {
            return;
        }
        let both_files = a.kind == Kind::File && b.kind == Kind::File;
        if both_files && a.sha256 != b.sha256 && self.details.len() < DETAIL_FILES {
            self.details.push((a.path.clone(), a.size as u64, b.size as u64));
        }
        self.diff.changed.push(EntryChange { path: a.path, changes, detail: None });
    }
}

/// The fields of two entries of the same path that differ.
fn field_changes(ea: &RamdiskEntry, eb: &RamdiskEntry) -> Vec<Change> {
    let mut c = Vec::new();
    push_if(&mut c, "type", format!("{:?}", ea.kind), format!("{:?}", eb.kind));
    push_if(&mut c, "content sha256", ea.sha256, eb.sha256);
    push_if(&mut c, "size", ea.size, eb.size);
    push_if(&mut c, "mode", &ea.mode, &eb.mode);
    push_if(&mut c, "uid", ea.uid, eb.uid);
    push_if(&mut c, "gid", ea.gid, eb.gid);
    push_if(&mut c, "mtime", ea.mtime, eb.mtime);
    let none = || "(none)".to_string();
    let (la, lb) = (ea.link_target.clone(), eb.link_target.clone());
    push_if(&mut c, "symlink target", la.unwrap_or_else(none), lb.unwrap_or_else(none));
    let (ra, rb) = (ea.rdev.clone(), eb.rdev.clone());
    push_if(&mut c, "rdev", ra.unwrap_or_else(none), rb.unwrap_or_else(none));
    c
}

/// Merge two path-ordered sources into `out`; `Some(side)` (0 or 1) when
/// that side turned out not to be sorted.
fn merge(a: &mut Entries<'_>, b: &mut Entries<'_>, out: &mut Listing) -> Result<Option<usize>> {
    let (mut x, mut y) = (a.next()?, b.next()?);
    loop {
        let order = match (&x, &y) {
            (Next::Unsorted, _) => return Ok(Some(0)),
            (_, Next::Unsorted) => return Ok(Some(1)),
            (Next::End, Next::End) => return Ok(None),
            (Next::Entry(_), Next::End) => Ordering::Less,
            (Next::End, Next::Entry(_)) => Ordering::Greater,
            (Next::Entry(ea), Next::Entry(eb)) => ea.path.cmp(&eb.path),
        };
        if order != Ordering::Greater {
            let ea = std::mem::replace(&mut x, a.next()?);
            if order == Ordering::Less {
                if let Next::Entry(ea) = ea {
                    out.removed(ea);
                }
                continue;
            }
            let eb = std::mem::replace(&mut y, b.next()?);
            if let (Next::Entry(ea), Next::Entry(eb)) = (ea, eb) {
                out.compare(ea, eb);
            }
        } else if let Next::Entry(eb) = std::mem::replace(&mut y, b.next()?) {
            out.added(eb);
        }
    }
}

/// Whether both archives hold the same names in the same order (streamed).
fn same_order(a: Side<'_>, b: Side<'_>) -> Result<bool> {
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    loop {
        let x = ra.next_entry().with_context(|| context(a))?;
        let y = rb.next_entry().with_context(|| context(b))?;
        match (x, y) {
            (None, None) => return Ok(true),
            (Some(x), Some(y)) if x.name_lossy() == y.name_lossy() => {}
            _ => return Ok(false),
        }
    }
}

/// The entries of `side` in path order: streamed, or loaded when `memory`.
fn source(side: Side<'_>, memory: bool) -> Result<Entries<'_>> {
    if memory {
        load_sorted(side)
    } else {
        Ok(Entries::Stream { reader: open(side)?, side, last: None })
    }
}

/// Entry-level differences of two ramdisk sections, and why content
/// details are missing if they could not be made.
pub(super) fn compare_entries(a: Side<'_>, b: Side<'_>) -> Result<(EntryDiff, Option<String>)> {
    let mut in_memory = [false; 2];
    let listing = loop {
        let (mut ea, mut eb) = (source(a, in_memory[0])?, source(b, in_memory[1])?);
        let mut listing = Listing::default();
        match merge(&mut ea, &mut eb, &mut listing)? {
            Some(side) => in_memory[side] = true,
            None => break listing,
        }
    };
    let Listing { mut diff, details, .. } = listing;
    // Two strictly sorted archives with the same names have the same order.
    if diff.is_empty() && in_memory.contains(&true) {
        diff.order_differs = !same_order(a, b)?;
    }
    let detail_error =
        add_details(a, b, &details, &mut diff).err().map(|e| format!("contents not compared: {e:#}"));
    Ok((diff, detail_error))
}

/// The first `limit` bytes of each regular file in `paths`, read from a
/// ramdisk section in one pass (path -> bytes).
fn entry_prefixes(side: Side<'_>, paths: &BTreeSet<&str>, limit: u64) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut r = open(side)?;
    let mut out = BTreeMap::new();
    while let Some(e) = r.next_entry().with_context(|| context(side))? {
        let name = e.name_lossy();
        if e.kind() == Kind::File && paths.contains(name.as_ref()) {
            let name = name.into_owned();
            let mut buf = Vec::new();
            r.data().take(limit).read_to_end(&mut buf).with_context(|| context(side))?;
            out.insert(name, buf);
        }
    }
    Ok(out)
}

/// Fill in [`EntryChange::detail`] for the changed files in `files`.
fn add_details(a: Side<'_>, b: Side<'_>, files: &[(String, u64, u64)], d: &mut EntryDiff) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let paths: BTreeSet<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let pa = entry_prefixes(a, &paths, DETAIL_LIMIT)?;
    let pb = entry_prefixes(b, &paths, DETAIL_LIMIT)?;
    let sizes: BTreeMap<&str, (u64, u64)> = files.iter().map(|f| (f.0.as_str(), (f.1, f.2))).collect();
    for c in &mut d.changed {
        if let (Some(x), Some(y), Some((la, lb))) =
            (pa.get(&c.path), pb.get(&c.path), sizes.get(c.path.as_str()))
        {
            c.detail = Some(content_detail(x, y, *la, *lb));
        }
    }
    Ok(())
}

/// Compare two entry lists by path (the last of equal names wins); the
/// order of the lists matters only for [`EntryDiff::order_differs`].
pub fn diff_entries(a: &[RamdiskEntry], b: &[RamdiskEntry]) -> EntryDiff {
    let map = |l: &[RamdiskEntry]| -> BTreeMap<String, RamdiskEntry> {
        l.iter().map(|e| (e.path.clone(), e.clone())).collect()
    };
    let (mut ea, mut eb) = (Entries::Sorted(map(a).into_values()), Entries::Sorted(map(b).into_values()));
    let mut listing = Listing::default();
    // Sorted sources neither fail nor report being unsorted.
    let _ = merge(&mut ea, &mut eb, &mut listing);
    let mut d = listing.diff;
    if d.is_empty() {
        d.order_differs = a.iter().map(|e| &e.path).ne(b.iter().map(|e| &e.path));
    }
    d
}
