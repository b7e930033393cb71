//! What is generated from the clap definitions: shell completions (`pgtunnel completions
//! SHELL`) and the man pages (`pgtunnel man [DIR]`).

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Args;
use crate::exit;

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "pgtunnel", &mut script);
    finish(to_stdout(&script), "the completion script")
}

/// pgtunnel(1) on stdout; or, with `dir`, pgtunnel.1 and a page per subcommand
/// (pgtunnel-explain.1, ...) written there.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let written = match dir {
        None => page(Args::command()).and_then(|page| to_stdout(&page)),
        Some(dir) => write_pages(dir),
    };
    finish(written, "the man page")
}

/// One command's page, in roff.
fn page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut roff)?;
    Ok(roff)
}

/// pgtunnel.1 and pgtunnel-SUBCOMMAND.1 in `dir` (created if missing).
fn write_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Args::command(), dir)
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn to_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn finish(written: std::io::Result<()>, what: &str) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgtunnel: cannot write {what}: {e}");
            ExitCode::from(exit::INTERNAL)
        }
    }
}
