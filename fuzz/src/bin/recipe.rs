//! Fuzz target `recipe`: the recipe parser on arbitrary text, then what the
//! build asks of a parsed recipe.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if let Ok(r) = eifbake::recipe::Recipe::parse(text) {
            let _ = r.mode_overrides();
        }
    });
}
