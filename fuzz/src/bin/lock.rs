//! Fuzz target `lock` under AFL++: see [`eifbake_fuzz::lock`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::lock(data));
}
