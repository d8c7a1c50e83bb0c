//! The synthetic root filesystem the benchmarks pack, unpack and pull: a
//! deterministic tree of about `size_mib` MiB ([`generate`]).
//!
//! The same arguments always give the same tree (names, contents, modes,
//! mtimes), whatever the machine: every byte comes from a SplitMix64 generator
//! with a fixed seed. The tree mimics a distribution image closely enough that
//! compression ratios mean something:
//!
//! - about 55% of the bytes are many small files (64 B to 64 KiB, skewed
//!   small) spread over nested directories under `bin etc lib opt share srv usr
//!   var`, of three kinds: text (words, numbers, punctuation; gzip to about a
//!   third), binary-like (zero runs, repeated chunks and random runs, like
//!   object code) and random (already-compressed assets);
//! - about 45% are four large files under `data/` (random, text, binary-like
//!   and a mix), written in 1 MiB chunks so the generator's memory stays flat;
//! - a symlink beside every 97th file, some empty directories, executables
//!   (0755) among the small files.
//!
//! The kernel file, when asked for, receives an 8 MiB binary-like stand-in for
//! a kernel image (EIF writers do not parse the kernel), the same bytes for
//! every size.
//!
//! Not for: anything but benchmarks. It refuses to write into an existing
//! directory, so a half-written tree is never mistaken for a complete one
//! (the harness writes to a temporary name and renames on success). This
//! file's own text is the tree's version ([`crate::data`] regenerates trees
//! when it changes), so edit it only to change the tree.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;
/// Every file, directory and symlink gets this mtime (2023-11-14).
const MTIME: i64 = 1_700_000_000;
const SEED: u64 = 0x5eed_e1fb_a4e0_0001;
const TOP_DIRS: [&str; 8] = ["bin", "etc", "lib", "opt", "share", "srv", "usr", "var"];

/// SplitMix64: tiny, fast, and fully specified, so the tree never changes
/// with a dependency's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the tiny modulo bias does not matter here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Binary,
    Random,
}

/// Produces content of one kind, chunk by chunk.
struct Content {
    words: Vec<Vec<u8>>,
}

impl Content {
    fn new(rng: &mut Rng) -> Content {
        // A vocabulary of 400 pseudo-words; frequent words are short.
        let words = (0..400)
            .map(|i| {
                let len = 2 + (rng.below(4 + i / 40)) as usize;
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect();
        Content { words }
    }

    /// Append about `n` bytes of `kind` to `out` (exactly `n`).
    fn generate(&self, rng: &mut Rng, kind: Kind, n: usize, out: &mut Vec<u8>) {
        let start = out.len();
        match kind {
            Kind::Random => {
                out.resize(start + n, 0);
                rng.fill(&mut out[start..]);
            }
            Kind::Text => {
                while out.len() - start < n {
                    // Zipf-like choice: squaring favours the first words.
                    let r = rng.below(1 << 16);
                    let idx = ((r * r * self.words.len() as u64) >> 32) as usize;
                    out.extend_from_slice(&self.words[idx]);
                    match rng.below(16) {
                        0 => out.push(b'\n'),
                        1 => out.extend_from_slice(b", "),
                        2 => out.extend_from_slice(format!(" {} ", rng.below(100_000)).as_bytes()),
                        3 => out.extend_from_slice(b". "),
                        _ => out.push(b' '),
                    }
                }
                out.truncate(start + n);
            }
            Kind::Binary => {
                while out.len() - start < n {
                    let run = 16 + rng.below(2048) as usize;
                    let here = out.len();
                    match rng.below(10) {
                        0..=2 => out.resize(here + run, 0),
                        3..=5 => {
                            out.resize(here + run, 0);
                            rng.fill(&mut out[here..]);
                        }
                        _ => {
                            // Repeat an earlier stretch of this file, as code and tables do.
                            let have = here - start;
                            if have < 64 {
                                out.resize(here + run, 0x90);
                            } else {
                                let from = start + rng.below(have as u64 - 32) as usize;
                                let len = run.min(here - from);
                                out.extend_from_within(from..from + len);
                            }
                        }
                    }
                }
                out.truncate(start + n);
            }
        }
    }
}

fn set_mtime(path: &Path) -> Result<()> {
    let ts = rustix::fs::Timespec { tv_sec: MTIME, tv_nsec: 0 };
    let times = rustix::fs::Timestamps { last_access: ts, last_modification: ts };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("set mtime of {}", path.display()))
}

/// What a generated tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file data.
    pub bytes: u64,
}

impl TreeStats {
    /// Files, directories and symlinks together.
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks
    }
}

/// The generator's state while it writes one tree.
struct Gen {
    rng: Rng,
    content: Content,
    buf: Vec<u8>,
    stats: TreeStats,
    /// Everything created, parents first (mtimes are set in reverse).
    created: Vec<PathBuf>,
}

fn write_file(
    path: &Path,
    size: u64,
    kind: Kind,
    mode: u32,
    rng: &mut Rng,
    content: &Content,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let f = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(MIB as usize, f);
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        buf.clear();
        content.generate(rng, kind, n, buf);
        w.write_all(buf).with_context(|| format!("write {}", path.display()))?;
        left -= n as u64;
    }
    let f =
        w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("flush {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Write the tree of `size_mib` MiB (at least 16) into `root`, which must not
/// exist, and the 8 MiB kernel stand-in into `kernel` when given.
pub fn generate(root: &Path, size_mib: u64, kernel: Option<&Path>) -> Result<TreeStats> {
    if size_mib < 16 {
        bail!("tree size: expected at least 16 MiB, got {size_mib}");
    }
    if root.exists() {
        bail!("{}: already exists; give a new directory", root.display());
    }
    let total = size_mib * MIB;
    let mut rng = Rng(SEED);
    let content = Content::new(&mut rng);
    let mut g = Gen {
        rng,
        content,
        buf: Vec::with_capacity(2 * MIB as usize),
        stats: TreeStats::default(),
        created: Vec::new(),
    };
    fs::create_dir(root).with_context(|| format!("create {}", root.display()))?;
    g.created.push(root.to_path_buf());
    g.large_files(root, total)?;
    g.small_files(root, total)?;
    // Children before parents, so a directory's mtime is set last.
    for p in g.created.iter().rev() {
        set_mtime(p)?;
    }
    if let Some(p) = kernel {
        // Its own generator, so the kernel is the same for every tree size.
        let mut krng = Rng(SEED ^ 0x6b65_726e_656c);
        write_file(p, 8 * MIB, Kind::Binary, 0o644, &mut krng, &g.content, &mut g.buf)?;
        set_mtime(p)?;
    }
    Ok(g.stats)
}

impl Gen {
    /// Large files: 45% of the bytes, in four files of different kinds.
    fn large_files(&mut self, root: &Path, total: u64) -> Result<()> {
        let data = root.join("data");
        fs::create_dir(&data)?;
        self.created.push(data.clone());
        self.stats.dirs += 1;
        let large_total = total * 45 / 100;
        let large = [
            ("assets.pak", Kind::Random, 35),
            ("journal.log", Kind::Text, 25),
            ("libbig.so", Kind::Binary, 25),
            ("model.bin", Kind::Random, 15),
        ];
        for (name, kind, pct) in large {
            let size = large_total * pct / 100;
            let p = data.join(name);
            write_file(&p, size, kind, 0o644, &mut self.rng, &self.content, &mut self.buf)?;
            self.created.push(p);
            self.stats.files += 1;
            self.stats.bytes += size;
        }
        Ok(())
    }

    /// Small files until the budget is used: nested directories of up to 40
    /// files, 12 subdirectories per top directory, then a new level.
    fn small_files(&mut self, root: &Path, total: u64) -> Result<()> {
        let small_total = total - self.stats.bytes;
        let mut small_bytes = 0u64;
        let mut n = 0u64;
        let mut dir = PathBuf::new();
        while small_bytes < small_total {
            if n % 40 == 0 {
                dir = self.next_dir(root, n)?;
            }
            // Sizes from 64 B to 64 KiB, log-uniform: most files are small.
            let exp = 6.0 + 10.0 * (self.rng.below(1 << 20) as f64 / (1u64 << 20) as f64);
            let size = (exp.exp2() as u64).min(small_total - small_bytes).max(1);
            let (kind, ext) = match self.rng.below(10) {
                0..=3 => (Kind::Text, "txt"),
                4..=6 => (Kind::Binary, "o"),
                _ => (Kind::Random, "dat"),
            };
            let mode = if matches!(kind, Kind::Binary) && self.rng.below(3) == 0 { 0o755 } else { 0o644 };
            let name = format!("f{n:06}.{ext}");
            let p = dir.join(&name);
            write_file(&p, size, kind, mode, &mut self.rng, &self.content, &mut self.buf)?;
            self.created.push(p);
            self.stats.files += 1;
            self.stats.bytes += size;
            small_bytes += size;
            if n % 97 == 0 {
                let l = dir.join(format!("link-{n:06}"));
                symlink(&name, &l)?;
                self.created.push(l);
                self.stats.symlinks += 1;
            }
            n += 1;
        }
        Ok(())
    }

    /// The directory for small files `n..n + 40`, created with its parents
    /// (and, for every 7th group, an empty sibling directory).
    fn next_dir(&mut self, root: &Path, n: u64) -> Result<PathBuf> {
        let top = TOP_DIRS[((n / 40) % TOP_DIRS.len() as u64) as usize];
        let group = n / 40 / TOP_DIRS.len() as u64;
        let mid = root.join(top).join(format!("pkg-{:04}", group / 12));
        let dir = mid.join(format!("sub-{:02}", group % 12));
        for d in [root.join(top), mid.clone(), dir.clone()] {
            if !d.exists() {
                fs::create_dir(&d).with_context(|| format!("create {}", d.display()))?;
                self.created.push(d);
                self.stats.dirs += 1;
            }
        }
        if group % 7 == 3 {
            let empty = dir.join("empty");
            fs::create_dir(&empty)?;
            self.created.push(empty);
            self.stats.dirs += 1;
        }
        Ok(dir)
    }
}
