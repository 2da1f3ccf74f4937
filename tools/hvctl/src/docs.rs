//! `hvctl completions <shell>` and `hvctl man`: generated from the CLI
//! definition ([`crate::cli::Cli`], clap) at run time, so every command
//! and option hvctl has is in them, with its help text, and they cannot
//! drift from it. Packagers write them out once:
//!
//! ```sh
//! hvctl completions bash > /usr/share/bash-completion/completions/hvctl
//! hvctl completions zsh  > /usr/share/zsh/vendor-completions/_hvctl
//! hvctl completions fish > /usr/share/fish/vendor_completions.d/hvctl.fish
//! hvctl man > /usr/share/man/man1/hvctl.1
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

/// Where each shell looks for completions, for the manual's FILES section.
const FILES: &str = "\
Shell completions, written by `hvctl completions SHELL`:
  bash  /usr/share/bash-completion/completions/hvctl
  zsh   /usr/share/zsh/vendor-completions/_hvctl
  fish  /usr/share/fish/vendor_completions.d/hvctl.fish
This page: `hvctl man > /usr/share/man/man1/hvctl.1`.";

/// Answers `completions` and `man` (to stdout); `None` for every other
/// command.
pub fn run(command: &Command) -> Option<ExitCode> {
    let mut out = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "hvctl", &mut out)
        }
        Command::Man => {
            if let Err(e) = man(&mut out) {
                eprintln!("hvctl: writing the manual page: {e}");
                return Some(ExitCode::FAILURE);
            }
        }
        _ => return None,
    }
    let mut stdout = std::io::stdout();
    Some(match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvctl: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    })
}

/// The manual page: clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
/// SUBCOMMANDS and VERSION, then FILES.
pub fn man(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let page = clap_mangen::Man::new(cmd);
    page.render(out)?;
    writeln!(out, ".SH FILES")?;
    for line in FILES.lines() {
        writeln!(out, "{}", roff_line(line))?;
        writeln!(out, ".br")?;
    }
    Ok(())
}

/// A text line as roff: a leading `.` or `'` would be a request, and `\`
/// is roff's escape.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\\\");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_line(".x"), "\\&.x");
        assert_eq!(roff_line("a\\b"), "a\\\\b");
        assert_eq!(roff_line("plain"), "plain");
    }
}
