//! `eifbake import FILE`: a Caution `Procfile` or `caution.hcl` made into a
//! recipe ([`crate::procfile`]). Not for: building it (`eifbake lock` and
//! `build` take the recipe). Invariant: an existing recipe is replaced only
//! with `--force`, and always whole (temporary name, then rename).

use std::process::ExitCode;

use anyhow::Result;

use crate::args::ImportArgs;
use crate::procfile::{import, ImportRequest, Options};

pub fn run(a: ImportArgs) -> Result<ExitCode> {
    let options = Options {
        name: String::new(),
        kernel_image: a.kernel_image,
        kernel_path: a.kernel_path,
        kernel_config: Some(a.kernel_config).filter(|c| !c.is_empty()),
        init_image: a.init_image,
        init_path: a.init_path,
        cmdline: a.cmdline,
    };
    let req = ImportRequest { file: a.file, out: a.output, force: a.force, name: a.name, options };
    let out = import(&req)?;
    outln!(
        "wrote {}; review it, then: eifbake lock {} && eifbake build {}",
        out.display(),
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
