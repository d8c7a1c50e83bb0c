//! Fuzz target `attestation` under AFL++: see [`eifbake_fuzz::attestation`].

fn main() {
    afl::fuzz!(|data: &[u8]| eifbake_fuzz::attestation(data));
}
