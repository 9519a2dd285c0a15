//! Build script: the commit the binary is built from, for `--version`
//! (`BUCARDO_BOOTSTRAP_COMMIT`): `git rev-parse --short HEAD` when this directory is the top of a
//! git checkout, else `unknown` (a build from a tarball, or from inside another repository).
//! It reruns only when HEAD or the branch it points to moves, not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let commit = match git(&dir, &["rev-parse", "--show-toplevel"]) {
        Some(top) if same_dir(Path::new(&top), &dir) => {
            for file in watched(&dir) {
                println!("cargo:rerun-if-changed={}", file.display());
            }
            git(&dir, &["rev-parse", "--short", "HEAD"])
        }
        _ => None,
    };
    println!(
        "cargo:rustc-env=BUCARDO_BOOTSTRAP_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}

/// HEAD, and the file that holds the commit of the branch it points to: the loose ref, or
/// packed-refs when the ref is packed. Each path comes from git, so a worktree (whose `.git`
/// is a file) works too. A file that does not exist is not watched: cargo would rerun on
/// every build.
fn watched(dir: &Path) -> Vec<PathBuf> {
    let path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut files = vec![path("HEAD")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(
            path(&branch)
                .filter(|p| p.is_file())
                .or(path("packed-refs")),
        );
    }
    files
        .into_iter()
        .flatten()
        .filter(|p| p.is_file())
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
