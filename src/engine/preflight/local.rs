//! This machine's checks: the PostgreSQL client tools against both servers' versions, and the
//! directories for private files.

use super::*;

/// A directory that exists, is safe for private files ([`unsafe_dir_reason`]) and writable, or can
/// be created under one that is. `flag` is the option that chooses it.
pub(super) fn directory_finding(group: &str, what: &str, dir: &Path, flag: &str) -> Vec<Finding> {
    let d = shell_word(&dir.display().to_string());
    let unsafe_reason = std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .and_then(|m| unsafe_dir_reason(&m));
    let finding = if dir.exists() {
        if !dir.is_dir() {
            Finding::fail(
                group,
                what,
                format!("{} is not a directory", dir.display()),
                None,
            )
        } else if let Some(why) = unsafe_reason {
            Finding::fail(
                group,
                what,
                format!(
                    "{}: {why}; give {flag} a directory of your own",
                    dir.display()
                ),
                None,
            )
        } else if writable(dir) {
            Finding::pass(group, what, format!("{} is writable", dir.display()))
        } else {
            Finding::fail(
                group,
                what,
                format!("{} is not writable by this user", dir.display()),
                Some(format!("sudo chown \"$(id -un)\" {d}")),
            )
        }
    } else {
        match dir.ancestors().skip(1).find(|a| a.exists()) {
            Some(a) if !a.is_dir() => Finding::fail(
                group,
                what,
                format!(
                    "{} cannot be created: {} is a file",
                    dir.display(),
                    a.display()
                ),
                None,
            ),
            Some(a) if writable(a) => Finding::pass(
                group,
                what,
                format!(
                    "{} does not exist yet; it can be created under {}",
                    dir.display(),
                    a.display()
                ),
            ),
            Some(a) => Finding::fail(
                group,
                what,
                format!(
                    "{} does not exist and {} is not writable by this user",
                    dir.display(),
                    a.display()
                ),
                Some(format!("sudo install -d -m 700 -o \"$(id -un)\" {d}")),
            ),
            None => Finding::fail(
                group,
                what,
                format!("{} cannot be created", dir.display()),
                None,
            ),
        }
    };
    vec![finding]
}

pub(super) fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a valid NUL-terminated path and has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// A PostgreSQL client tool found on this machine.
#[derive(Clone, Debug)]
pub(super) struct Tool {
    pub(super) name: &'static str,
    pub(super) path: String,
    pub(super) result: Result<(String, (u32, u32)), String>,
    /// Needed for this run (pg_dumpall only when roles are copied).
    pub(super) needed: bool,
}

pub(super) struct LocalOut {
    pub(super) findings: Vec<Finding>,
    pub(super) tools: Vec<Tool>,
}

pub(super) async fn local_checks(s: &Settings) -> LocalOut {
    let mut tools = Vec::new();
    for (name, needed) in [
        ("pg_dump", true),
        ("psql", true),
        ("pg_dumpall", s.copy_roles),
    ] {
        let path = pg_tool(name);
        let inv = Invocation::new([path.clone(), "--version".into()]);
        let result = match process::run(&inv, Duration::from_secs(10)).await {
            Ok(o) if o.status == 0 => parse_tool_version(&o.stdout)
                .ok_or_else(|| format!("cannot read a version in {:?}", o.stdout.trim())),
            Ok(o) => Err(format!("`{path} --version` failed: {}", o.tail())),
            Err(e) => Err(e.one_line()),
        };
        tools.push(Tool {
            name,
            path,
            result,
            needed,
        });
    }
    let findings = directory_finding(JUMP_BOX, "state directory", &s.state_dir(), "--log-dir");
    LocalOut { findings, tools }
}

/// `pg_dump (PostgreSQL) 15.20 (Debian ...)` → ("15.20", (15, 0)); 9.6.24 → (9, 6).
pub fn parse_tool_version(out: &str) -> Option<(String, (u32, u32))> {
    let v = out
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?
        .trim_end_matches(|c: char| !c.is_ascii_digit());
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = parts.next()??;
    let major = if major >= 10 {
        (major, 0)
    } else {
        (major, parts.next().flatten().unwrap_or(0))
    };
    Some((v.to_string(), major))
}

/// `server_version_num` → major version, comparable with [`parse_tool_version`]'s.
pub fn server_major(num: i32) -> (u32, u32) {
    let num = num.max(0) as u32;
    if num >= 100000 {
        (num / 10000, 0)
    } else {
        (num / 10000, (num / 100) % 100)
    }
}

pub(super) fn show_major((a, b): (u32, u32)) -> String {
    if a >= 10 {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

pub(super) fn tool_findings(tools: &[Tool], here: Option<i32>, there: Option<i32>) -> Vec<Finding> {
    let servers: Vec<(&str, (u32, u32))> = [("HERE", here), ("THERE", there)]
        .into_iter()
        .filter_map(|(n, v)| Some((n, server_major(v?))))
        .collect();
    let newest = servers.iter().map(|(_, v)| *v).max();
    let install = |v: Option<(u32, u32)>| {
        format!(
            "apt-get install postgresql-client-{}  # or set PG_BINDIR to a newer bin directory",
            v.map(show_major).unwrap_or_else(|| "15".into())
        )
    };
    let mut out = Vec::new();
    for t in tools {
        let bad = |msg: String, fix: String| {
            if t.needed {
                Finding::fail(JUMP_BOX, t.name, msg, Some(fix))
            } else {
                Finding::warn(
                    JUMP_BOX,
                    t.name,
                    format!("{msg} (needed only with --copy-roles)"),
                    Some(fix),
                )
            }
        };
        match &t.result {
            Err(e) => out.push(bad(
                format!("{} is not usable: {e}", t.name),
                install(newest),
            )),
            Ok((v, major)) => {
                let older: Vec<String> = servers
                    .iter()
                    .filter(|(_, s)| s > major)
                    .map(|(n, s)| format!("{n} runs {}", show_major(*s)))
                    .collect();
                if older.is_empty() {
                    let against: Vec<String> = servers
                        .iter()
                        .map(|(n, s)| format!("{n} {}", show_major(*s)))
                        .collect();
                    out.push(Finding::pass(
                        JUMP_BOX,
                        t.name,
                        format!(
                            "{} {v} ({}) is at least as new as the servers{}",
                            t.name,
                            t.path,
                            if against.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", against.join(", "))
                            }
                        ),
                    ));
                } else {
                    out.push(bad(
                        format!(
                            "{} {v} ({}) is older than the server: {}",
                            t.name,
                            t.path,
                            older.join(", ")
                        ),
                        install(newest),
                    ));
                }
            }
        }
    }
    out
}
