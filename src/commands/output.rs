//! Writing command output to standard output and messages to standard error
//! without ever panicking.
//!
//! For: every line a command prints. `println!` panics when standard output
//! is a closed pipe (`eifbake describe x.eif | head -c1`) or a full disk
//! (`> /dev/full`); [`outln!`], [`text`] and [`json`] return a
//! [`StdoutError`] instead, which the binary turns into exit code 2: silently
//! for a closed pipe (the reader went away, as with other Unix tools), with a
//! one-line message otherwise.
//! Not for: progress bars (they draw on standard error and ignore failures),
//! or deciding what to print (each command does).
//!
//! Invariants: nothing here panics; a write error on standard output always
//! reaches the caller as a [`StdoutError`] (found in the error chain by
//! [`is_closed_pipe`] and the binary); a write error on standard error is
//! dropped, as there is nowhere left to report it.

use std::fmt;
use std::io::{self, BufWriter, Write};

/// Writing to standard output failed (a closed pipe, a full disk, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0} (check where the output is redirected)")]
pub struct StdoutError(pub io::Error);

/// Print one formatted line to standard output, returning from the enclosing
/// function with a [`StdoutError`] if it cannot be written.
macro_rules! outln {
    () => {
        $crate::commands::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::commands::output::line(format_args!($($arg)*))?
    };
}

/// Write `args` and a newline to standard output.
pub fn line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).map_err(StdoutError)
}

/// Write `s` as it is to standard output.
pub fn text(s: &str) -> Result<(), StdoutError> {
    io::stdout().lock().write_all(s.as_bytes()).map_err(StdoutError)
}

/// Write `bytes` as they are to standard output (binary output).
pub fn bytes(b: &[u8]) -> Result<(), StdoutError> {
    io::stdout().lock().write_all(b).map_err(StdoutError)
}

/// Write `value` as pretty JSON and a newline to standard output, streamed
/// (never held whole in memory as text).
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    match serde_json::to_writer_pretty(&mut out, value) {
        Ok(()) => {}
        Err(e) if e.is_io() => return Err(StdoutError(e.into()).into()),
        Err(e) => return Err(anyhow::Error::new(e).context("rendering the output as JSON")),
    }
    out.write_all(b"\n").and_then(|()| out.flush()).map_err(StdoutError)?;
    Ok(())
}

/// Flush standard output (the last step before exiting).
pub fn flush() -> Result<(), StdoutError> {
    io::stdout().lock().flush().map_err(StdoutError)
}

/// Write one line to standard error, ignoring failure.
pub fn eline(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Whether `err` is, or was caused by, a write to a closed standard output pipe.
pub fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<StdoutError>())
        .any(|e| e.0.kind() == io::ErrorKind::BrokenPipe)
}
