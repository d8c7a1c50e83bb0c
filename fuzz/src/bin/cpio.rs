//! Fuzz target `cpio` under AFL++: see [`eifbake_fuzz::cpio`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::cpio(data));
}
