//! Secrets: a password type that never prints, and the redactor that masks every known secret
//! (and anything that looks like a conninfo password) in text that leaves the process: log lines,
//! child-process output, error messages.

use std::fmt;
use std::sync::{LazyLock, RwLock};

/// What a masked secret looks like wherever it would have appeared.
pub const MASK: &str = "********";

/// A password. `Debug` and `Display` print [`MASK`]; the value is only reachable through
/// [`Secret::expose`], which call sites use to hand it to libpq or a 0600 passfile.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password and registers it with the process-wide redactor.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

static KNOWN: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Remembers a secret so that [`redact`] masks it. Very short values are not registered: masking
/// every "a" in a log would hide more than it protects, and such passwords are refused upstream.
pub fn register(value: &str) {
    if value.len() < 4 {
        return;
    }
    if let Ok(mut known) = KNOWN.write() {
        if !known.iter().any(|k| k == value) {
            known.push(value.to_string());
            // Longest first, so that a secret containing another is masked whole.
            known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }
}

/// Masks every registered secret, every `password=`/`pass=` value in conninfo-like text, the
/// password of a `scheme://user:password@host` URI, and the random password that `bucardo add db`
/// and `bucardo install` print when they create their own superuser.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(known) = KNOWN.read() {
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
    }
    out = mask_key_values(&out);
    out = mask_uri_passwords(&out);
    mask_printed_passwords(&out)
}

fn mask_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_password_key(rest) {
        let (head, tail) = rest.split_at(pos.value_start);
        out.push_str(head);
        let end = value_end(tail);
        if end > 0 && &tail[..end] != MASK {
            out.push_str(MASK);
        } else {
            out.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

struct KeyMatch {
    value_start: usize,
}

/// Keys after which a password follows. Those ending in a space only count when a quoted value
/// follows (`PASSWORD 'x'`, bucardo's `with password "x"`), so that prose such as "password
/// authentication failed" stays readable.
const PASSWORD_KEYS: [&str; 5] = ["password=", "pass=", "dbpass=", "password:", "password "];

fn find_password_key(text: &str) -> Option<KeyMatch> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for key in PASSWORD_KEYS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(key) {
            let at = from + i;
            let v = at + key.len();
            let boundary = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
            let quoted_next = lower[v..].trim_start_matches(' ').starts_with(['\'', '"']);
            if boundary && (!key.ends_with(' ') || quoted_next) {
                if best.is_none_or(|b| v < b) {
                    best = Some(v);
                }
                break;
            }
            from = v;
        }
    }
    best.map(|value_start| KeyMatch { value_start })
}

/// Where a value ends: at its closing quote when quoted (a doubled quote stays inside, as in
/// SQL), else at whitespace or a separator.
fn value_end(tail: &str) -> usize {
    let trimmed_start = tail.len() - tail.trim_start_matches(' ').len();
    let body = &tail[trimmed_start..];
    let end = match body.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let mut end = body.len();
            let mut chars = body.char_indices().skip(1).peekable();
            while let Some((i, c)) = chars.next() {
                if c == q {
                    if chars.peek().is_some_and(|&(_, n)| n == q) {
                        chars.next();
                        continue;
                    }
                    end = i + 1;
                    break;
                }
            }
            end
        }
        _ => body
            .find(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == ')')
            .unwrap_or(body.len()),
    };
    trimmed_start + end
}

fn mask_uri_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `bucardo install` prints `Password for user bucardo is: <42 random characters>` when it creates
/// its superuser and cannot write `~/.pgpass`; everything after `is:` on such a line is masked.
/// (`bucardo add db` prints `Created superuser 'bucardo' with password "<...>"`, which the
/// quoted-value rule of [`mask_key_values`] covers.)
fn mask_printed_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let lower = line.to_ascii_lowercase();
        let marker = lower
            .find("password for user ")
            .and_then(|p| lower[p..].find(" is:").map(|i| p + i + " is:".len()));
        match marker {
            Some(at) => {
                let (head, rest) = line.split_at(at);
                let value = rest.trim_end_matches(['\n', '\r']);
                out.push_str(head);
                if value.trim().is_empty() || value.trim() == MASK {
                    out.push_str(value);
                } else {
                    out.push(' ');
                    out.push_str(MASK);
                }
                out.push_str(&rest[value.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn redact_masks_registered_secrets_anywhere() {
        let _s = Secret::new("s3cr3t-in-the-middle");
        let out = redact("error: auth failed for xs3cr3t-in-the-middley");
        assert!(!out.contains("s3cr3t-in-the-middle"), "{out}");
    }

    #[test]
    fn redact_masks_conninfo_and_uri_passwords() {
        let out = redact("DBI connect('dbname=w;host=h;password=abc123x','bucardo') pass=zzz9 ok");
        assert!(!out.contains("abc123x") && !out.contains("zzz9"), "{out}");
        let out = redact("connecting to postgres://bob:pw1234@db.example:5432/app failed");
        assert_eq!(
            out,
            format!("connecting to postgres://bob:{MASK}@db.example:5432/app failed")
        );
        let out = redact("postgres://bob@host/db is fine");
        assert_eq!(out, "postgres://bob@host/db is fine");
    }

    /// The characters of Bucardo's `generate_password` (bucardo 5.6.0).
    const BUCARDO_CHARS: &str = "ABCDEFGHJKMNPQRSTWXYZabcdefghjkmnpqrstwxyz23456789@#%^&(){}[];./";

    fn bucardo_password(seed: u64) -> String {
        let chars: Vec<char> = BUCARDO_CHARS.chars().collect();
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..42)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chars[(x % chars.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn redact_masks_bucardo_printed_passwords() {
        let out = redact("Password for user bucardo is: Xy7Gq0pA9\nnext line\n");
        assert_eq!(
            out,
            format!("Password for user bucardo is: {MASK}\nnext line\n")
        );
        let out = redact("CREATE USER bucardo SUPERUSER PASSWORD 'abcdefgh'");
        assert_eq!(
            out,
            format!("CREATE USER bucardo SUPERUSER PASSWORD {MASK}")
        );
        for seed in 0..500 {
            let pw = bucardo_password(seed);
            // bucardo install, when it cannot append to ~/.pgpass:
            let install = format!(
                "Could not append password information to file \"/root/.pgpass\"\nPassword for user bucardo is: {pw}\nYou probably want to change it or put into a .pgpass file\n"
            );
            // bucardo add db, when it creates the role itself (a warn, on stderr):
            let add_db = format!("Created superuser 'bucardo' with password \"{pw}\"\n\n");
            // its psql call, echoed on failure:
            let sql = format!("ERROR: in CREATE USER bucardo SUPERUSER PASSWORD '{pw}' at x");
            for text in [install, add_db, sql] {
                let out = redact(&text);
                assert!(!out.contains(&pw), "{out}");
                assert!(out.contains(MASK), "{out}");
                assert_eq!(out.lines().count(), text.lines().count(), "{out}");
                assert_eq!(redact(&out), out, "redaction is idempotent");
            }
        }
    }

    #[test]
    fn redact_keeps_prose_about_passwords() {
        for text in [
            "FATAL: password authentication failed for user \"bucardo\"",
            "check the password (PGPASSWORD, BUCARDOPASS or ~/.pgpass)",
            "no password supplied",
            "password is required",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn quoted_values_are_masked_whole() {
        let out = redact("dbpass='a b;c)d''e' next");
        assert_eq!(out, format!("dbpass={MASK} next"));
        let out = redact("password=\"x;y\" and pass=plain;tail");
        assert_eq!(out, format!("password={MASK} and pass={MASK};tail"));
    }
}
