//! Real crates.io crates for tests that vendor or build Rust: the pins of
//! eifbake's own Cargo.lock and the `.crate` files building eifbake left in
//! the host's cargo cache (so no test needs crates.io). Fails loudly, never
//! skips, when a crate is not there.

use std::fs;
use std::path::{Path, PathBuf};

use eifbake::cargo_vendor::{read_cargo_lock, LockedCrate};
use eifbake::digest::Digest;

/// The version and checksum eifbake's own Cargo.lock gives crate `name`.
pub fn own_locked(name: &str) -> LockedCrate {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    read_cargo_lock(&own).unwrap().into_iter().find(|c| c.name == name).unwrap_or_else(|| {
        panic!("eifbake's Cargo.lock no longer has {name}: pick another dependency-free crate")
    })
}

/// The `.crate` bytes of `c` from the host's cargo cache; fails loudly
/// (never skips) when they are not there.
pub fn cached_crate(c: &LockedCrate) -> Vec<u8> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let cache = home.join("registry/cache");
    let file = format!("{}-{}.crate", c.name, c.version);
    let found = fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}; build eifbake with cargo first", cache.display()))
        .map(|d| d.unwrap().path().join(&file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{file} is not in {}/*/; build eifbake with cargo first", cache.display()));
    let bytes = fs::read(&found).unwrap();
    assert_eq!(
        Digest::of(&bytes),
        c.checksum,
        "{} is not the crate eifbake's Cargo.lock pins",
        found.display()
    );
    bytes
}
