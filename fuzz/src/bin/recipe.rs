//! Fuzz target `recipe` under AFL++: see [`eifbake_fuzz::recipe`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::recipe(data));
}
