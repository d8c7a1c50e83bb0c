//! Progress reporting: a bar on a terminal, silence otherwise.
//!
//! Long operations (packing, hashing, pulling, extracting) take a
//! [`Progress`]; when stderr is not a terminal (CI logs, pipes, tests) every
//! call is a no-op so output stays machine-readable.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress bar that is hidden unless stderr is a terminal.
#[derive(Clone)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar for `total` bytes (0 when unknown) labelled `what`.
    pub fn bytes(what: &str, total: u64) -> Self {
        let bar = if std::io::stderr().is_terminal() && std::env::var_os("EIFBAKE_NO_PROGRESS").is_none() {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what.to_string());
        Progress(bar)
    }

    /// A hidden bar, for library callers that want no output.
    pub fn hidden() -> Self {
        Progress(ProgressBar::hidden())
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n)
    }

    pub fn inc_length(&self, n: u64) {
        self.0.inc_length(n)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear()
    }
}
