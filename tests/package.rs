//! The Debian package, end to end: built, inspected, installed, run from PATH and removed.
//!
//! It is built by the same code as `cargo xtask deb` (xtask/src/deb.rs, compiled into this
//! test), from the debug binary the test suite has built already rather than a second, release
//! build: the release package differs only in the binary it strips and ships. The test reads
//! the package's files and control fields, renders every man page with `man -l` (warnings
//! on), loads the bash completions in bash, then installs it with `dpkg -i` as root (CI runs
//! as root on a throwaway machine), runs `bucardo-bootstrap` and `man` from PATH and removes
//! the package, also when an assertion fails. Without root, or when the package is installed
//! on this machine already (the test must not replace an operator's install), it checks the
//! package extracted into a temporary directory instead, and says so. No other test in this
//! binary depends on whether the package is installed.

#[allow(dead_code)]
#[path = "../xtask/src/deb.rs"]
mod deb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NAME: &str = "bucardo-bootstrap";

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (install dpkg-dev and man-db)"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// The subcommands that get a man page of their own: every visible one but `help`.
fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    bucardo_bootstrap::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect()
}

/// Whether dpkg knows the package as (even partly) installed.
fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", NAME])
        .output()
        .is_ok_and(|o| {
            let status = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success()
                && !status.ends_with("not-installed")
                && !status.ends_with("config-files")
        })
}

/// Removes the package when dropped, so that a failed assertion leaves the machine as it was.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Installed {
        let guard = Installed;
        run(Command::new("dpkg").arg("-i").arg(deb));
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["--purge", NAME]).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("dpkg --purge {NAME} failed: {out:?}");
        }
    }
}

#[test]
fn the_debian_package_installs_the_tool_its_man_pages_and_completions_and_removes_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let package = deb::build(&deb::Options {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_bucardo-bootstrap")),
        out_dir: tmp.path().join("out"),
    })
    .unwrap_or_else(|e| panic!("the package does not build: {e}"));
    let deb = package.path;
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("{NAME}_{}-1_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim())
    );

    // The control fields.
    let field = |name: &str| stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), NAME);
    let depends = field("Depends");
    for needed in [
        "libc6 (>= ",
        "postgresql-client (>= 12) | ",
        "| postgresql-client-15 |",
        "bucardo",
    ] {
        assert!(
            depends.contains(needed),
            "Depends lacks {needed:?}: {depends}"
        );
    }
    assert!(!depends.contains("$auto"), "{depends}");
    assert!(field("Suggests").contains("postgresql-plperl"));
    assert!(field("Description").contains("PL/PerlU"));

    // The files: owned by root, the binary executable, a man page per command.
    let contents = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| {
        contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("the package has no {path}:\n{contents}"))
            .to_string()
    };
    assert!(entry("usr/bin/bucardo-bootstrap").starts_with("-rwxr-xr-x root/root"));
    // (file, the command it documents)
    let mut pages = vec![(format!("{NAME}.1.gz"), NAME.to_string())];
    pages.extend(
        subcommands()
            .iter()
            .map(|s| (format!("{NAME}-{s}.1.gz"), format!("{NAME} {s}"))),
    );
    assert!(pages.len() >= 9, "{pages:?}");
    for (page, _) in &pages {
        assert!(entry(&format!("usr/share/man/man1/{page}")).starts_with("-rw-r--r-- root/root"));
    }
    let bash = "usr/share/bash-completion/completions/bucardo-bootstrap";
    for path in [
        bash,
        "usr/share/zsh/vendor-completions/_bucardo-bootstrap",
        "usr/share/fish/vendor_completions.d/bucardo-bootstrap.fish",
        "usr/share/doc/bucardo-bootstrap/README.md.gz",
        "usr/share/doc/bucardo-bootstrap/copyright",
    ] {
        entry(path);
    }
    assert!(
        contents.lines().all(|l| l.contains(" root/root ")),
        "every file belongs to root:\n{contents}"
    );

    // What the files say, extracted: each man page renders without a warning and is the page
    // of its command; the completions load in bash and know the subcommands.
    let tree = tmp.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    for (page, command) in &pages {
        let out = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(tree.join("usr/share/man/man1").join(page))
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C"));
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "{page}: {stderr}");
        for part in ["NAME", "SYNOPSIS", "OPTIONS", "EXAMPLES", command] {
            assert!(text.contains(part), "{page} lacks {part:?}:\n{text}");
        }
    }
    let completion = stdout(
        Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1" && complete -p bucardo-bootstrap && declare -f "${2}" >/dev/null"#)
            .arg("bash")
            .arg(tree.join(bash))
            .arg("_bucardo__bootstrap"),
    );
    assert!(
        completion.contains("-F _bucardo__bootstrap bucardo-bootstrap"),
        "{completion}"
    );
    let script = std::fs::read_to_string(tree.join(bash)).unwrap();
    for sub in subcommands() {
        assert!(script.contains(&sub), "the bash completion lacks {sub}");
    }

    // Installed, or extracted: the tool from PATH, and its man page for `run`.
    let root = unsafe { libc::geteuid() } == 0;
    let guard;
    let (path, manpath) = if root && !installed() {
        guard = Some(Installed::install(&deb));
        (std::env::var("PATH").unwrap_or_default(), None)
    } else {
        eprintln!(
            "package test: {}; checking the package extracted instead of installed",
            if root {
                "bucardo-bootstrap is installed on this machine already"
            } else {
                "not root"
            }
        );
        guard = None;
        let path = format!(
            "{}:{}",
            tree.join("usr/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        (path, Some(tree.join("usr/share/man")))
    };
    let from_path = |args: &[&str]| {
        stdout(
            Command::new(NAME)
                .args(args)
                .env("PATH", &path)
                .env("HOME", tmp.path()),
        )
    };
    if guard.is_some() {
        let which = stdout(Command::new("sh").args(["-c", "command -v bucardo-bootstrap"]));
        assert_eq!(which.trim(), "/usr/bin/bucardo-bootstrap");
    }
    let version = from_path(&["--version"]);
    assert!(
        version.starts_with(&format!("{NAME} {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let help = from_path(&["check", "--help"]);
    assert!(
        help.contains("Usage: bucardo-bootstrap check") && help.contains("Examples:"),
        "{help}"
    );
    let mut man = Command::new("man");
    man.arg("bucardo-bootstrap-run")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C");
    if let Some(dir) = &manpath {
        man.env("MANPATH", dir);
    }
    let page = stdout(&mut man);
    assert!(
        page.contains("bucardo-bootstrap run") && page.contains("EXAMPLES"),
        "{page}"
    );

    if let Some(guard) = guard {
        drop(guard);
        assert!(!installed(), "dpkg --purge left {NAME} installed");
        assert!(!Path::new("/usr/bin/bucardo-bootstrap").exists());
        assert!(!Path::new("/usr/share/man/man1/bucardo-bootstrap-run.1.gz").exists());
    }
}
