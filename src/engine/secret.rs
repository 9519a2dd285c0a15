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

fn find_password_key(text: &str) -> Option<KeyMatch> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for key in ["password=", "pass=", "dbpass=", "password '", "password:"] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(key) {
            let at = from + i;
            let boundary = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
            if boundary {
                let v = at + key.len();
                if best.is_none_or(|b| v < b) {
                    best = Some(v);
                }
                break;
            }
            from = at + key.len();
        }
    }
    best.map(|value_start| KeyMatch { value_start })
}

fn value_end(tail: &str) -> usize {
    let trimmed_start = tail.len() - tail.trim_start_matches(' ').len();
    let body = &tail[trimmed_start..];
    let quoted = body.starts_with('\'') || body.starts_with('"');
    let end = if quoted {
        let q = body.as_bytes()[0] as char;
        body[1..].find(q).map(|i| i + 2).unwrap_or(body.len())
    } else {
        body.find(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == ')')
            .unwrap_or(body.len())
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

fn mask_printed_passwords(text: &str) -> String {
    // bucardo prints e.g. `Password for user bucardo is: <42 chars>` or a new superuser's
    // `... with password <x>`; mask the word after "is:" / "password" on such lines.
    text.lines()
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if lower.contains("password") && (lower.contains(" is:") || lower.contains(" is ")) {
                match line.rfind(|c: char| c == ':' || c == ' ') {
                    Some(i) if i + 1 < line.len() => format!("{}{}", &line[..=i], MASK),
                    _ => line.to_string(),
                }
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
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
        assert_eq!(out, format!("connecting to postgres://bob:{MASK}@db.example:5432/app failed"));
        let out = redact("postgres://bob@host/db is fine");
        assert_eq!(out, "postgres://bob@host/db is fine");
    }

    #[test]
    fn redact_masks_bucardo_printed_passwords() {
        let out = redact("Password for user bucardo is: Xy7Gq0pA9\nnext line\n");
        assert_eq!(out, format!("Password for user bucardo is: {MASK}\nnext line\n"));
        let out = redact("CREATE USER bucardo SUPERUSER PASSWORD 'abcdefgh'");
        assert!(!out.contains("abcdefgh"), "{out}");
    }
}
