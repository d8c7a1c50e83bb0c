//! Fuzz target `eif` under AFL++: see [`eifbake_fuzz::eif`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::eif(data));
}
