//! Fuzz target `signature` under AFL++: see [`eifbake_fuzz::signature`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::signature(data));
}
