//! Writing results to standard output.
//!
//! `print!` panics when the reader goes away (`kubectl switchyard export x | head -1`); a
//! closed pipe just ends the output here.

use std::io::{ErrorKind, Write};

use anyhow::Context;

use crate::failure::Failure;

/// Writes `text` to standard output.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        result => result
            .context("writing to standard output")
            .map_err(Failure::Input),
    }
}
