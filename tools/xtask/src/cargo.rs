//! Running Cargo from the repository root with the same toolchain.

use std::process::Command;

use xtask::bail;
use xtask::error::{Error, Result};
use xtask::paths;

/// A `cargo` command in the repository root. `CARGO` is the Cargo that runs
/// this xtask (so the pinned toolchain is used throughout).
pub fn command(args: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(paths::repo_root());
    cmd
}

/// Runs `cargo <args>`, failing if it fails.
pub fn run(args: &[&str]) -> Result<()> {
    run_env(args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let status = command(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| Error::new(format!("starting cargo {}: {e}", args.join(" "))))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
