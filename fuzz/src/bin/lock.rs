//! Fuzz target `lock`: the lockfile parser on arbitrary text; a lockfile it
//! accepts must survive writing and reading back unchanged.

use std::path::Path;

use eifbake::lock::Lock;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let path = Path::new("fuzz.lock");
        if let Ok(lock) = Lock::parse(text, path) {
            let written = lock.to_toml();
            let again = Lock::parse(&written, path).expect("a lockfile eifbake wrote must parse");
            assert_eq!(again.to_toml(), written, "writing a lockfile is not stable");
        }
    });
}
