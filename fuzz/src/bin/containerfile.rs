//! Fuzz target `containerfile` under AFL++: see [`eifbake_fuzz::containerfile`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::containerfile(data));
}
