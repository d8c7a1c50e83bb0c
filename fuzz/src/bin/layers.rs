//! Fuzz target `layers` under AFL++: see [`eifbake_fuzz::layers`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::layers(data));
}
