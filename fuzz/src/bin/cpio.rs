//! Fuzz target `cpio`: the newc reader (plain and gzip) on arbitrary bytes,
//! reading each entry's data in each of the reader's ways.

use eifbake::cpio;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(mut r) = cpio::Reader::new(data) else { return };
        let mut i = 0u32;
        loop {
            let Ok(Some(e)) = r.next_entry() else { break };
            let _ = (e.kind(), e.permissions(), e.name_lossy());
            let ok = match i % 3 {
                0 => r.data_sha256().is_ok(),
                1 => r.data_to_vec(4096).is_ok(),
                _ => true, // left for next_entry to skip
            };
            if !ok {
                break;
            }
            i = i.wrapping_add(1);
        }
        let _ = cpio::list(data);
    });
}
