//! `cargo xtask`: the project's own tasks, in Rust so that they need no tool from outside
//! Debian and crates.io.
//!
//! `cargo xtask deb [--no-build] [--binary PATH] [--out DIR]` builds the release binary
//! (`cargo build --release --locked`) and the Debian package from it, into `target/debian/`
//! unless told otherwise (see [`deb`]).

mod deb;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask deb [--no-build] [--binary PATH] [--out DIR]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is in the repository")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("deb") {
        return Err(USAGE.into());
    }
    let (mut build, mut binary, mut out_dir) = (true, None, target.join("debian"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--no-build" => build = false,
            "--binary" => binary = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--out" => out_dir = PathBuf::from(args.next().ok_or(USAGE)?),
            _ => return Err(USAGE.into()),
        }
    }
    if build && binary.is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // `cargo run` gave this process the variables of its own package. A build script that
        // tracks one of them (ring's tracks CARGO_MANIFEST_DIR) would see it change between
        // this build and a plain `cargo build --release`, and each would rebuild everything
        // above it.
        for (key, _) in std::env::vars() {
            let run_var = key.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&key.as_str());
            if run_var {
                cmd.env_remove(key);
            }
        }
        let status = cmd
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--locked",
                "--bin",
                "bucardo-bootstrap",
            ])
            .status()
            .map_err(|e| format!("cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --release failed ({status})"));
        }
    }
    let binary = binary.unwrap_or_else(|| target.join("release/bucardo-bootstrap"));
    let package = deb::build(&deb::Options {
        root,
        binary,
        out_dir,
    })?;
    let size = std::fs::metadata(&package.path).map_or(0, |m| m.len());
    print!("{}", package.control);
    println!("{} ({size} bytes)", package.path.display());
    Ok(())
}
