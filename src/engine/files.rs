//! Private directories and files for passfiles, journals, logs, scripts and plan files: directories
//! created 0700, never loosened, and refused when other users could plant a symlink in them; files
//! written 0600 without following a symlink.

use crate::engine::error::EngineError;
use std::path::Path;

/// Makes sure `dir` exists for the tool's private files (passfiles, journal, logs, Bucardo's PID
/// and log files). A missing directory is created 0700, with any missing parents. An existing one
/// keeps its mode, because it may be shared or belong to the system (`/tmp`, `/var/log`); it is
/// refused when it is not safe ([`unsafe_dir_reason`]). `flag` names the option that chose it.
pub fn private_dir(dir: &Path, flag: &str) -> Result<(), EngineError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(EngineError::Config(format!(
            "{} is not a directory: give {flag} a directory",
            dir.display()
        ))),
        Ok(m) => match unsafe_dir_reason(&m) {
            Some(why) => Err(EngineError::Config(format!(
                "{}: {why}; give {flag} a directory of your own",
                dir.display()
            ))),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir_0700(dir),
        Err(e) => Err(e.into()),
    }
}

/// Creates `dir` (and missing parents) 0700 if it does not exist; never changes an existing one.
pub fn create_dir_0700(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // The umask can take bits away from 0700, even the owner's: be exact.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Why an existing directory cannot hold the tool's private files: other users can write to it,
/// or it belongs to another user (not root). Either could plant a symlink where a passfile or the
/// journal is about to be written. `None` when it is safe.
pub fn unsafe_dir_reason(m: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = m.permissions().mode() & 0o7777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if mode & 0o022 != 0 {
        Some(format!("other users can write to it (mode {mode:o})"))
    } else if m.uid() != me && m.uid() != 0 {
        Some(format!("it belongs to another user (uid {})", m.uid()))
    } else {
        None
    }
}

/// Writes `contents` to `path` with mode 0600 (also when the file existed), never through a
/// symlink; a missing parent directory is created 0700. Every front end saves scripts and plan
/// files through this one function.
pub fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_0700(dir).map_err(|e| e.one_line())?;
    }
    // The operator chose the place, perhaps a shared one: never follow a symlink planted there.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    f.write_all(contents.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::private_dir;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_dir_creates_0700_and_never_changes_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        private_dir(&fresh, "--log-dir").unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&shared, "--log-dir").unwrap();
        assert_eq!(mode(&shared), 0o755, "an existing directory keeps its mode");

        for open in [0o1777, 0o775] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(open)).unwrap();
            let e = private_dir(&shared, "--bucardo-logdir")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("other users can write to it") && e.contains("--bucardo-logdir"),
                "{e}"
            );
            assert_eq!(mode(&shared), open, "refused, and left as it was");
        }
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(private_dir(&file, "--log-dir").is_err());

        // Someone else's directory, even a closed one: its owner could plant symlinks. Only root
        // can hand a directory to another user, so only a root run can check this.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = root.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
            let e = private_dir(&theirs, "--log-dir").unwrap_err().to_string();
            assert!(e.contains("belongs to another user (uid 65534)"), "{e}");
        }
    }
}
