//! Which `raftchat` binary a run drives, built when needed.
//!
//! `--binary` or `$RAFTCHAT_BIN` win. Otherwise the workspace's own build, in the profile this
//! harness was built in (`cargo run --release -p jepsen` drives a release raftchat): `cargo
//! build` runs first, a no-op when nothing changed. With an unsafe knob the harness builds the
//! `unsafe-knobs` feature, keeps that binary as `raftchat-unsafe-knobs` beside the normal one,
//! and rebuilds the normal one (cargo keeps both feature sets, so that is a relink at most).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn cargo_build(features: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The same selection as the README's `cargo build --bin raftchat` (the workspace's default
    // members), so features unify the same way and dependencies are not built a second time.
    cmd.current_dir(crate::runner::workspace()).args(["build", "--bin", "raftchat"]);
    if profile() == "release" {
        cmd.arg("--release");
    }
    if features {
        cmd.args(["--features", "raftchat-server/unsafe-knobs"]);
    }
    let status = cmd.status().context("running cargo build for raftchat")?;
    anyhow::ensure!(status.success(), "cargo build of raftchat failed ({status})");
    Ok(())
}

/// The binary to run; `unsafe_knobs` asks for the build with deliberate bugs.
pub fn resolve(explicit: Option<PathBuf>, unsafe_knobs: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("RAFTCHAT_BIN").map(PathBuf::from)) {
        anyhow::ensure!(p.exists(), "{} does not exist", p.display());
        return Ok(p);
    }
    let dir = crate::runner::workspace().join("target").join(profile());
    let normal = dir.join("raftchat");
    if unsafe_knobs {
        let unsafe_bin = dir.join("raftchat-unsafe-knobs");
        cargo_build(true)?;
        std::fs::copy(&normal, &unsafe_bin)
            .with_context(|| format!("copying {} to {}", normal.display(), unsafe_bin.display()))?;
        cargo_build(false)?;
        return Ok(unsafe_bin);
    }
    if let Err(e) = cargo_build(false) {
        anyhow::ensure!(normal.exists(), "{e:#}");
        eprintln!("jepsen: {e:#}; using the existing {}", normal.display());
    }
    Ok(normal)
}
