//! The enclave's program: replace with yours.

fn main() {
    println!("hello from the enclave");
}
