//! bench/RESULTS.md from a [`Results`]: the header (command, machine,
//! method), the targets table, one section per measurement, fuzz/RESULTS.md
//! as it stands, and the exact commands.
//!
//! Not for: measuring. Every derived figure (ratios, cores, MiB/s, targets
//! met) is computed here from the raw samples, so rendering the same JSON
//! twice gives the same bytes.
//!
//! Invariant: a skipped section keeps its heading and says why
//! (`**Skipped:** reason`); its targets are left out of the table.

use std::fmt::Write as _;

use crate::results::*;
use crate::sections::*;
use crate::timing::Timing;

const MIB: f64 = 1048576.0;

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

/// `a ÷ b` to two places, `n/a` when `b` is 0.
fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}", a / b)
    }
}

fn wall_ratio(a: &Timing, b: &Timing) -> String {
    ratio(a.best_wall_ns() as f64, b.best_wall_ns() as f64)
}

fn cpu_ratio(a: &Timing, b: &Timing) -> String {
    ratio(a.min_cpu_ns() as f64, b.min_cpu_ns() as f64)
}

/// `| label | wall | CPU | cores | RSS | extra… |`
fn row(out: &mut String, label: &str, t: &Timing, extra: &[String]) {
    let _ = write!(
        out,
        "| {label} | {:.2} | {:.2} | {:.2} | {:.1}",
        t.wall_s(),
        t.cpu_s(),
        t.cores(),
        t.rss_mib()
    );
    for c in extra {
        let _ = write!(out, " | {c}");
    }
    out.push_str(" |\n");
}

/// The targets table's rows: (description, measured, met).
struct Targets(Vec<(String, String, bool)>);

impl Targets {
    fn add(&mut self, what: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.0.push((what.into(), measured.into(), met));
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The whole report; `fuzz` is the text of fuzz/RESULTS.md, if any.
pub fn markdown(r: &Results, fuzz: Option<&str>) -> String {
    let mut targets = Targets(Vec::new());
    let sections = [
        pack(r, &mut targets),
        sign(r, &mut targets),
        measure(r, &mut targets),
        memory(r, &mut targets),
        onepass(r, &mut targets),
        unpack(r, &mut targets),
        pull(r, &mut targets),
        apps(r, &mut targets),
    ];
    let mut out = header(r);
    out.push_str("\n## Targets\n\n");
    if targets.0.is_empty() {
        out.push_str("No target could be measured in this run (see the sections below).\n");
    } else {
        out.push_str("| target | measured | result |\n|---|---|---|\n");
        for (what, measured, met) in &targets.0 {
            let mark = if *met { "met" } else { "**missed**" };
            let _ = writeln!(out, "| {what} | {measured} | {mark} |");
        }
    }
    for s in sections {
        out.push('\n');
        out.push_str(&s);
    }
    if let Some(f) = fuzz {
        out.push('\n');
        out.push_str(f);
        if !f.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(&exact_commands(r));
    out
}

fn header(r: &Results) -> String {
    let (s, m, t) = (&r.settings, &r.machine, &r.tree);
    let mut out = String::from("# eifbake benchmarks\n\n");
    out.push_str("Written by the bench harness (`bench/`, crate `eifbake-bench`); do not edit by hand. Recompute with:\n\n");
    let _ = writeln!(out, "```\n{}    # or: make bench\n```\n", s.command);
    let _ = writeln!(out, "- date: {}, run took {} min {} s", m.date, m.duration_s / 60, m.duration_s % 60);
    let _ = writeln!(
        out,
        "- eifbake: {} {} ({}), built with {}",
        m.git_branch, m.git_rev, m.eifbake_version, m.rustc
    );
    let _ = writeln!(
        out,
        "- machine: {} CPUs ({}), {:.1} GiB RAM, Linux {}; load average {} at start, {} at the end",
        m.cpus, m.cpu_model, m.mem_total_gib, m.kernel, m.load_start, m.load_end
    );
    let _ = writeln!(
        out,
        "  (the machine is shared with other builds: wall times are best of {}, and the rest still carries some noise)",
        s.runs
    );
    if !m.others.is_empty() {
        let _ = writeln!(
            out,
            "- also running at the start (ps, CPU share over each process's life): {}",
            m.others.join(", ")
        );
    }
    let _ = writeln!(out, "- peers: {}", m.peers.join(", "));
    let _ = writeln!(
        out,
        "- synthetic tree ({} MiB, bench/src/gentree.rs, fixed seed): {} files, {} directories, {} symlinks, {} MiB of file data; small files (64 B–64 KiB) of text, object-code-like and random data, plus four large files; kernel stand-in: 8 MiB",
        s.size_mib, t.files, t.dirs, t.symlinks, mib(t.bytes)
    );
    out.push_str("- method: wall time = best of the runs, page cache warm, outputs not fsynced (`sync` before each run); CPU = user + system time of the command and its children (least over the runs); cores = CPU ÷ wall, the parallelism it actually got (at most 2 here, less while other jobs hold a core); peak RSS = `ru_maxrss` of wait4(2) (what GNU time's %M reports), the largest single process of the command, max over the runs\n");
    out
}

/// A section's heading and prose, then its body or the reason it was skipped.
fn section<T>(intro: &str, outcome: &Outcome<T>, body: impl FnOnce(&T) -> String) -> String {
    let mut out = intro.to_string();
    match outcome {
        Outcome::Done(t) => out.push_str(&body(t)),
        Outcome::Skipped(why) => {
            let _ = write!(out, "\n**Skipped:** {why}\n");
        }
    }
    out
}

fn pack(r: &Results, targets: &mut Targets) -> String {
    let t = &r.tree;
    let intro = format!(
        "## pack: directory → ramdisk → EIF\n\n\
eifbake: `eifbake ramdisk TREE -o R [--gzip]` then `eifbake eif --kernel K --cmdline S --ramdisk R -o E`.\n\
Shell + AWS: `find . | LC_ALL=C sort | cpio -o -H newc --reproducible [| gzip -n]` then AWS `eif_build` 0.2.1 with the same kernel and cmdline.\n\
pigz row (for context, not a target): the same pipeline with `pigz -n` (2 threads) instead of `gzip -n`.\n\n\
Tree: {} files, {} directories, {} symlinks, {} MiB of file data.\n",
        t.files,
        t.dirs,
        t.symlinks,
        mib(t.bytes)
    );
    section(&intro, &r.pack, |p| {
        let mut out = format!("\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | ramdisk MiB | EIF MiB | shell time ÷ eifbake time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", r.settings.runs);
        let sizes = |x: &PackRow, vs: String| vec![mib(x.ramdisk_bytes), mib(x.eif_bytes), vs];
        row(&mut out, "eifbake, plain", &p.eb_plain.timing, &sizes(&p.eb_plain, "1.00".into()));
        let vs = wall_ratio(&p.sh_plain.timing, &p.eb_plain.timing);
        row(&mut out, "cpio + eif_build, plain", &p.sh_plain.timing, &sizes(&p.sh_plain, vs));
        row(&mut out, "eifbake, `--gzip`", &p.eb_gz.timing, &sizes(&p.eb_gz, "1.00".into()));
        let vs = wall_ratio(&p.sh_gz.timing, &p.eb_gz.timing);
        row(&mut out, "cpio \\| gzip -n + eif_build", &p.sh_gz.timing, &sizes(&p.sh_gz, vs));
        let vs = wall_ratio(&p.sh_pigz.timing, &p.eb_gz.timing);
        row(&mut out, "cpio \\| pigz -n + eif_build (context)", &p.sh_pigz.timing, &sizes(&p.sh_pigz, vs));
        let gz = |a: &PackRow, b: &PackRow| ratio(a.ramdisk_bytes as f64, b.ramdisk_bytes as f64);
        let _ = write!(
            out,
            "\nCompressed ÷ plain ramdisk size: eifbake {}, gzip -n {}.\n",
            gz(&p.eb_gz, &p.eb_plain),
            gz(&p.sh_gz, &p.sh_plain)
        );
        let sp = p.sh_gz.timing.best_wall_ns() as f64 / p.eb_gz.timing.best_wall_ns() as f64;
        targets.add(
            "pack with gzip ≥ 3x faster than cpio \\| gzip -n + eif_build",
            format!(
                "{}x (CPU time: {}x less)",
                wall_ratio(&p.sh_gz.timing, &p.eb_gz.timing),
                cpu_ratio(&p.sh_gz.timing, &p.eb_gz.timing)
            ),
            sp >= 3.0,
        );
        for (name, x) in [("plain", &p.eb_plain), ("gz", &p.eb_gz)] {
            let m = format!("{:.1}", x.timing.rss_mib());
            targets.add(
                format!("peak RSS of eifbake {name} pack < 64 MiB ({} MiB tree)", r.settings.size_mib),
                format!("{m} MiB"),
                m.parse::<f64>().unwrap_or(f64::MAX) <= 64.0,
            );
        }
        out
    })
}

fn sign(r: &Results, targets: &mut Targets) -> String {
    let intro = "## sign: the same plain ramdisk packed into a signed EIF\n\n\
eifbake: `eifbake eif … --signing-certificate C --private-key K` (ECDSA P-384, RFC 6979 nonces).\n\
AWS: `eif_build … --signing-certificate C --private-key K` (OpenSSL, random nonce). Key and certificate:\n\
the test-only pair in `tests/data/signing/signer1.{pem,key}`. Each tool runs twice; the last column says\n\
whether its two outputs are the same bytes.\n";
    section(intro, &r.sign, |s| {
        let mut out = format!("\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | EIF MiB | AWS time ÷ eifbake time | two runs identical |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", r.settings.runs);
        let eb = &s.eifbake;
        row(
            &mut out,
            "eifbake eif, signed",
            &eb.timing,
            &[mib(eb.eif_bytes), "1.00".into(), yes_no(eb.identical).into()],
        );
        row(
            &mut out,
            "eifbake eif, unsigned (context)",
            &s.eifbake_unsigned,
            &[mib(s.unsigned_bytes), String::new(), String::new()],
        );
        let vs = wall_ratio(&s.aws.timing, &eb.timing);
        row(
            &mut out,
            "eif_build, signed",
            &s.aws.timing,
            &[mib(s.aws.eif_bytes), vs, yes_no(s.aws.identical).into()],
        );
        let _ = write!(
            out,
            "\nPCR0 and PCR8 of the two tools' signed EIFs agree: {} ({}).\n",
            yes_no(s.eifbake_pcrs == s.aws_pcrs),
            s.eifbake_pcrs
        );
        targets.add(
            "a signed EIF is the same bytes when made twice",
            format!("eifbake: {}, eif_build: {}", yes_no(eb.identical), yes_no(s.aws.identical)),
            eb.identical,
        );
        out
    })
}

fn measure(r: &Results, targets: &mut Targets) -> String {
    let intro = "## measure: PCRs of an EIF\n\n\
All four read the same file: the plain EIF that AWS `eif_build` wrote in the pack section (so eifbake also reads a foreign EIF).\n\
`sha384_pass` (`eifbake-bench tool sha384-pass`, bench/src/tools.rs) is one SHA-384 over every byte of the file on one core with 4 MiB reads, using the same `sha2` crate as eifbake; it and coreutils `sha384sum` give the floor for any reader.\n\
`aws_measure` (`eifbake-bench tool aws-measure`) is AWS's `EifReader::from_eif` + `check_crc` + `get_measurements` from aws-nitro-enclaves-image-format 0.8.\n";
    section(intro, &r.measure, |m| {
        let agree = match &m.disagreement {
            None => "yes".to_string(),
            Some(d) => format!("no ({d})"),
        };
        let mut out = format!(
            "\nFile: {} MiB. PCR0/1/2 from eifbake and from AWS's reader agree: {agree}.\n\n",
            mib(m.file_bytes)
        );
        // The floor is the faster of the two single-core passes.
        let floor = if m.sha384sum.best_wall_ns() < m.sha384_pass.best_wall_ns() {
            &m.sha384sum
        } else {
            &m.sha384_pass
        };
        let _ = write!(out, "| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | MiB/s | ÷ floor time |\n|---|---:|---:|---:|---:|---:|---:|\n", r.settings.measure_runs);
        let file_mib: f64 = mib(m.file_bytes).parse().unwrap_or(0.0);
        for (label, t) in [
            ("sha384_pass (one core, the floor)", &m.sha384_pass),
            ("sha384sum (coreutils)", &m.sha384sum),
            ("eifbake describe", &m.describe),
            ("eifbake describe --json", &m.describe_json),
            ("AWS EifReader (aws_measure)", &m.aws),
        ] {
            row(&mut out, label, t, &[format!("{:.0}", file_mib / t.wall_s()), wall_ratio(t, floor)]);
        }
        let sp = m.aws.best_wall_ns() as f64 / m.describe.best_wall_ns() as f64;
        targets.add(
            "describe ≥ 2x faster than AWS EifReader",
            format!("{}x", wall_ratio(&m.aws, &m.describe)),
            sp >= 2.0,
        );
        let vs = m.describe.best_wall_ns() as f64 / floor.best_wall_ns() as f64;
        targets.add(
            "describe within 1.25x of one SHA-384 pass (the faster of sha384_pass and sha384sum)",
            format!("{}x the pass (CPU: {}x)", wall_ratio(&m.describe, floor), cpu_ratio(&m.describe, floor)),
            vs <= 1.25,
        );
        out.push_str("\nThe floor is the faster of the two single-core passes in wall time. On a busy machine a process also waits for a core, so wall times of sequential runs can differ more than their work does: the CPU column (user + system, least over the runs) shows the work itself.\n");
        let rss = format!("{:.1}", m.describe.rss_mib());
        targets.add(
            "peak RSS of eifbake describe < 64 MiB",
            format!("{rss} MiB"),
            rss.parse::<f64>().unwrap_or(f64::MAX) <= 64.0,
        );
        targets.add("eifbake describe and AWS EifReader agree on PCR0/1/2", agree, m.disagreement.is_none());
        out
    })
}

fn memory(r: &Results, targets: &mut Targets) -> String {
    let scale: String = r.settings.scale_mib.iter().map(|s| format!("{s} MiB ")).collect();
    let intro = format!(
        "## memory as the tree grows\n\n\
One run of each step per tree size (peak RSS of the process; wall time for context).\n\
eifbake's steps should stay flat; AWS `eif_build` and `EifReader` hold whole sections in memory.\n\
Flat means: the peak at the largest size is within 1.25x of the peak at the smallest size. Trees: {scale}besides the main one, same generator (file count grows with the size).\n"
    );
    section(&intro, &r.memory, |m| {
        let mut out = String::from("\n| step |");
        for s in &m.sizes {
            let _ = write!(out, " {s} MiB tree: RSS MiB (s) |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(m.sizes.len()));
        out.push('\n');
        for step in &m.steps {
            let _ = write!(out, "| {} |", step.label);
            for t in &step.timings {
                match t {
                    Some(t) => {
                        let _ = write!(out, " {:.1} ({:.2}) |", t.rss_mib(), t.wall_s());
                    }
                    None => out.push_str(" n/a |"),
                }
            }
            out.push('\n');
        }
        memory_targets(m, targets);
        out
    })
}

fn memory_targets(m: &Memory, targets: &mut Targets) {
    let last = m.sizes.len() - 1;
    let (small, large) = (m.sizes[0], m.sizes[last]);
    for step in m.steps.iter().filter(|s| s.eifbake) {
        let (Some(Some(a)), Some(Some(b))) = (step.timings.first(), step.timings.get(last)) else { continue };
        let (a, b) = (a.max_rss_kib() as f64, b.max_rss_kib() as f64);
        let g = ratio(b, a);
        // Growth per tree entry: what eifbake keeps per file (to sort paths).
        let (ea, eb) = (m.entries[0] as f64, m.entries[last] as f64);
        let per = if ea == eb { "n/a".to_string() } else { format!("{:.0}", (b - a) * 1024.0 / (eb - ea)) };
        let b_mib = format!("{:.1}", b / 1024.0);
        let met = b / a <= 1.25 && b_mib.parse::<f64>().unwrap_or(f64::MAX) <= 64.0;
        let label = step.label.trim_start_matches("eifbake ");
        targets.add(
            format!("eifbake {label} memory flat and < 64 MiB ({small} → {large} MiB tree)"),
            format!("{:.1} → {b_mib} MiB ({g}x; {per} bytes more per extra tree entry)", a / 1024.0),
            met,
        );
    }
}

fn onepass(r: &Results, targets: &mut Targets) -> String {
    let intro = "## onepass: a directory of real files → EIF, against one SHA-384 pass over the EIF\n\n\
The one pass is `eifbake eif --kernel K --cmdline S --ramdisk DIR -o E`: the directory is packed into the EIF as it is written, no intermediate ramdisk file. The same EIF made in two steps (`eifbake ramdisk DIR -o R`, then `eifbake eif … --ramdisk R`) is timed beside it, and the two files are checked to be identical. \
The floor is the faster of `sha384sum` and `sha384_pass` over the resulting EIF: PCR0 alone hashes almost all of its bytes, so no writer can beat one SHA-384 pass on one core. Page cache warm (the directory is read once first).\n";
    section(intro, &r.onepass, |o| {
        let mut out = format!(
            "\nDirectory: `{}`, {} entries, {} MiB (`du -sb`); ramdisk {} MiB, EIF {} MiB.\n",
            o.dir,
            o.entries,
            mib(o.dir_bytes),
            mib(o.ramdisk_bytes),
            mib(o.eif_bytes)
        );
        let floor = if o.sha384sum.best_wall_ns() < o.sha384_pass.best_wall_ns() {
            &o.sha384sum
        } else {
            &o.sha384_pass
        };
        let _ = write!(out, "\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | ÷ floor time |\n|---|---:|---:|---:|---:|---:|\n", r.settings.runs);
        row(&mut out, "sha384sum of the EIF", &o.sha384sum, &[wall_ratio(&o.sha384sum, floor)]);
        row(&mut out, "sha384_pass of the EIF", &o.sha384_pass, &[wall_ratio(&o.sha384_pass, floor)]);
        row(&mut out, "eifbake eif --ramdisk DIR (one pass)", &o.eifbake, &[wall_ratio(&o.eifbake, floor)]);
        row(&mut out, "eifbake ramdisk + eif (two steps)", &o.two_steps, &[wall_ratio(&o.two_steps, floor)]);
        let vs = o.eifbake.best_wall_ns() as f64 / floor.best_wall_ns() as f64;
        targets.add(
            format!("directory → EIF within 1.5x of one SHA-384 pass over the EIF ({})", o.dir),
            format!("{}x the pass (CPU: {}x)", wall_ratio(&o.eifbake, floor), cpu_ratio(&o.eifbake, floor)),
            vs <= 1.5,
        );
        out
    })
}

fn unpack(r: &Results, targets: &mut Targets) -> String {
    let intro = format!(
        "## unpack: applying image layers\n\n\
Three gzip layers made from the tree with GNU tar (`--sort=name --owner=0 --group=0 --mtime=@1`) and `gzip -n`, applied in order into an empty directory.\n\
eifbake: `eifbake::oci::layer::apply_layers` through `eifbake-bench tool apply-layers` (no CLI command exposes it alone). GNU tar: `tar -xzf LAYER -C DIR` for each layer (its gzip runs as a separate process). Both run as {}, outputs not fsynced.\n",
        r.machine.user
    );
    section(&intro, &r.unpack, |u| {
        let layers: String = u.layer_bytes.iter().map(|b| format!("{} MiB ", mib(*b))).collect();
        let same = u.listing_tar == u.listing_eifbake;
        let mut out = format!("\nLayers: {layers}compressed, {} MiB of tar.\n", mib(u.tar_bytes));
        let _ = write!(
            out,
            "\nSame entries (type, mode, owner, size, link target, path) in both trees: {} (listing hashes: tar {}, eifbake {}).\n",
            yes_no(same),
            u.listing_tar,
            u.listing_eifbake
        );
        let _ = write!(out, "\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | ÷ tar time |\n|---|---:|---:|---:|---:|---:|\n", r.settings.runs);
        row(&mut out, "GNU tar -xzf, 3 layers", &u.tar, &["1.00".into()]);
        let vs = wall_ratio(&u.eifbake, &u.tar);
        row(&mut out, "eifbake apply_layers, 3 layers", &u.eifbake, std::slice::from_ref(&vs));
        let met = u.eifbake.best_wall_ns() as f64 / u.tar.best_wall_ns() as f64 <= 1.2;
        targets.add("layer application within 1.2x of GNU tar -xzf", format!("{vs}x tar's time"), met);
        targets.add("layer application gives the same entries as GNU tar", yes_no(same), same);
        out
    })
}

fn pull(r: &Results, targets: &mut Targets) -> String {
    let intro = "## pull: registry → local OCI layout\n\n\
A loopback `docker-registry serve` (CNCF distribution, filesystem storage in a temporary directory) holds the three-layer image (pushed with `skopeo copy` from an OCI layout).\n\
eifbake: `eifbake lock` once, then `eifbake --store S fetch RECIPE` into an empty store each run. skopeo: `skopeo copy --src-tls-verify=false docker://ADDR/bench/synthetic:1 oci:DIR:bench` into an empty directory each run.\n";
    section(intro, &r.pull, |p| {
        let have_all = match &p.missing {
            None => "yes".to_string(),
            Some(m) => format!("no ({m})"),
        };
        let mut out = format!(
            "\nImage: {} layers, {} MiB compressed. Both copies hold every layer blob: {have_all}.\n",
            p.layers,
            mib(p.compressed_bytes)
        );
        let _ = write!(out, "\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | MiB/s | ÷ skopeo time |\n|---|---:|---:|---:|---:|---:|---:|\n", r.settings.runs);
        let mbs = |t: &Timing| format!("{:.0}", p.compressed_bytes as f64 / MIB / t.wall_s());
        row(&mut out, "skopeo copy", &p.skopeo, &[mbs(&p.skopeo), "1.00".into()]);
        let vs = wall_ratio(&p.eifbake, &p.skopeo);
        row(&mut out, "eifbake fetch", &p.eifbake, &[mbs(&p.eifbake), vs.clone()]);
        let met = p.eifbake.best_wall_ns() <= p.skopeo.best_wall_ns();
        targets.add("eifbake fetch no slower than skopeo copy", format!("{vs}x skopeo's time"), met);
        out
    })
}

fn apps(r: &Results, targets: &mut Targets) -> String {
    let intro = "## apps: recipes/rust-server, eifbake against buildah bud\n\n\
A Rust HTTP server with two crates.io dependencies (httparse, itoa), compiled offline into a static binary in the Debian Rust 1.96 toolchain image (scripts/make-rust-image.sh). \
Both tools start from the same four images (busybox, kernel, init, rust) in one loopback `docker-registry`, and compile with no network.\n\n\
- eifbake: `eifbake build recipes/rust-server`, the crates from its `cargo_lock` source (downloaded from `file://` copies of the host's cargo cache, checked against the Cargo.lock, vendored); output: the EIF, PCRs, manifest and provenance.\n\
- buildah: `buildah bud --layers --network none --runtime runc` (crun refuses this host's hybrid cgroups; eifbake runs crun with its cgroup manager disabled) in a private directory, from the Containerfile below (the recipe's step and enclave as stages; buildah 1.28 cannot add a layer to a base image whose config has no `history`, which the fixture images lack, so the two it builds on are given as `-history` copies: the same layers, a history entry per layer added to the config); buildah has no cargo_lock source, so its context holds a vendor directory assembled beforehand (untimed) by the same code (`eifbake::cargo_vendor::vendor`); output: an image in its storage (no EIF: nothing in buildah makes one).\n\
- cold: an empty store (eifbake: images, sources, step and image-root caches; the cold build extracts the toolchain image into the root cache and hashes it) or empty storage (buildah: images, layer cache); no-op: the same build again, everything cached; change: one line appended to `src/main.rs` (a comment), then the build; eifbake needs `eifbake lock` first (the app's tree hash is pinned in the lock), which is timed with it. verify: `eifbake verify` of the last build's manifest (store warm with the images; verify never takes a step or an image root from the cache, so it extracts the toolchain image and compiles); buildah has no counterpart.\n\
- peak RSS: `ru_maxrss` of wait4(2): the largest single process of the command and every descendant it waited for (rustc or the linker in a compiling run).\n";
    section(intro, &r.apps, |a| {
        let mut out = format!("\n| command | wall s (best of {}) | CPU s | cores | peak RSS MiB | eifbake time ÷ buildah time |\n|---|---:|---:|---:|---:|---:|\n", a.runs);
        for (what, eb, bh) in [
            ("cold build", &a.eb_cold, &a.buildah_cold),
            ("no-op rebuild", &a.eb_noop, &a.buildah_noop),
            ("rebuild after a one-line change", &a.eb_change, &a.buildah_change),
        ] {
            row(&mut out, &format!("eifbake, {what}"), eb, &[wall_ratio(eb, bh)]);
            row(&mut out, &format!("buildah bud, {what}"), bh, &["1.00".into()]);
        }
        row(&mut out, "eifbake verify", &a.eb_verify, &[String::new()]);
        let _ = write!(
            out,
            "\nEIF: {} MiB; buildah's image: {}. The compile step took {:.2} s in eifbake's sandbox in the last cold build.\n",
            mib(a.eif_bytes),
            a.buildah_image_size,
            a.cold_step_s
        );
        let cold = a.eb_cold.best_wall_ns() as f64 / a.buildah_cold.best_wall_ns() as f64;
        targets.add(
            "recipes/rust-server cold build ≤ 1.2x buildah bud's",
            format!(
                "{}x (peak RSS {:.1} vs {:.1} MiB)",
                wall_ratio(&a.eb_cold, &a.buildah_cold),
                a.eb_cold.rss_mib(),
                a.buildah_cold.rss_mib()
            ),
            cold <= 1.2,
        );
        targets.add(
            "recipes/rust-server no-op rebuild < 1 s",
            format!("{:.2} s (buildah: {:.2} s)", a.eb_noop.wall_s(), a.buildah_noop.wall_s()),
            a.eb_noop.wall_s() < 1.0,
        );
        // The run with the best wall time, against its own compile.
        let best = (0..a.eb_change.wall_ns.len()).min_by_key(|&i| a.eb_change.wall_ns[i]).unwrap_or(0);
        let (wall, step) =
            (a.eb_change.wall_ns[best] as f64 / 1e9, a.change_step_s.get(best).copied().unwrap_or(f64::NAN));
        let _ = write!(
            out,
            "\nRebuild after a change: {wall:.2} s, of which the compile step {step:.2} s in the sandbox and {:.2} s the rest (lock, sources hashed, the toolchain image's cached root filesystem re-hashed before the overlay is mounted, the enclave's images extracted, the ramdisk and EIF written).\n",
            wall - step
        );
        targets.add(
            "recipes/rust-server rebuild after a one-line change ≤ the compile + 2 s",
            format!("{wall:.2} s = compile {step:.2} s + {:.2} s", wall - step),
            wall - step <= 2.0,
        );
        let _ = write!(
            out,
            "\nThe Containerfile (`REG` = the loopback registry):\n\n```dockerfile\n{}```\n",
            crate::sections::apps::CONTAINERFILE
        );
        out
    })
}

fn exact_commands(r: &Results) -> String {
    let mut out = String::from("## Exact commands\n\n");
    let _ = writeln!(
        out,
        "Variables: `EB` = target/release/eifbake, `BENCH` = target/release/eifbake-bench, `TREE` = bench/work/tree-{}, `KERNEL` = the 8 MiB stand-in, `CMDLINE` = `{}`, `P`/`U`/`PL` = work directories, `L` = the layer directory.\n",
        r.settings.size_mib, r.settings.cmdline
    );
    out.push_str("```sh\n# pack\n");
    for c in [EB_PACK_PLAIN, SH_PACK_PLAIN, EB_PACK_GZ, SH_PACK_GZ, SH_PACK_PIGZ] {
        let _ = writeln!(out, "{c}");
    }
    out.push_str("# sign\n");
    for c in [SIGN_EB, SIGN_EB_UNSIGNED, SIGN_AWS] {
        let _ = writeln!(out, "{c}");
    }
    out.push_str("# measure (MEIF = $P/sh.eif)\n");
    let _ = writeln!(out, "{M_SHA}; {M_SHA384SUM}; {M_DESCRIBE}; {M_DESCRIBE_JSON}; {M_AWS}");
    let _ = writeln!(out, "# onepass (OD = the directory, OP = a work directory)\n{ONEPASS_EB}\n{ONEPASS_TWO_STEPS}\n{ONEPASS_SHA384SUM}; {ONEPASS_SHA}");
    let _ = writeln!(out, "# unpack\n{UNPACK_TAR}\n{UNPACK_EB}");
    let _ = writeln!(out, "# pull\n{PULL_SKOPEO}\n{PULL_EB}");
    out.push_str("# apps (AP = the project, AS/AO = eifbake's store and output, BC/BR = buildah's context and storage, AW = the work directory; EIFBAKE_CONFIG names the crates' file:// download)\n");
    for c in [APP_EB_BUILD, APP_EB_CHANGE, APP_EB_VERIFY, APP_BUILDAH, APP_BUILDAH_CHANGE] {
        let _ = writeln!(out, "{c}");
    }
    out.push_str("```\n");
    out
}
