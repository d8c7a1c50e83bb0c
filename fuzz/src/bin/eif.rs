//! Fuzz target `eif`: the EIF reader on arbitrary bytes (header, section
//! table, CRC, PCRs, metadata, signature, kernel kind), then `diff` against
//! the seed image `corpus/eif/basic.eif`, which compares ramdisk entries.

use eifbake::eif::kernel::KernelKind;
use eifbake::eif::{diff, Eif, SectionKind};
use eifbake::progress::Progress;

const REFERENCE: &[u8] = include_bytes!("../../corpus/eif/basic.eif");

fn main() {
    let reference = eifbake_fuzz::file("reference.eif", REFERENCE);
    let reference = Eif::open(&reference).expect("the reference EIF opens");
    let progress = Progress::hidden();
    afl::fuzz!(|data: &[u8]| {
        let path = eifbake_fuzz::file("input.eif", data);
        let Ok(eif) = Eif::open(&path) else { return };
        let _ = eif.verify(&progress);
        let _ = eif.metadata_json();
        let _ = eif.signature_section();
        if let Some(k) = eif.section(SectionKind::Kernel) {
            let _ = KernelKind::read(eif.section_reader(k)).map(|k| k.summary(eif.header.arch()));
        }
        let _ = diff::compare(&eif, &reference, &progress);
    });
}
