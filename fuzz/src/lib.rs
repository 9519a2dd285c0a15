//! Properties of bucardo-bootstrap's parsers of untrusted text, checked on arbitrary input: the
//! connection URI parser, the `--tables` list parser and the plan-file parser. Each `check_*`
//! panics when a property fails, so that both cargo-fuzz (`fuzz_targets/`) and the plain,
//! deterministic randomized smoke test (`tests/smoke.rs`, `cargo test` on stable) report it.
//!
//! Fuzzing (nightly): `cd fuzz && cargo +nightly fuzz run uri -- -max_total_time=120` (targets
//! `uri`, `table_list`, `planfile`). Smoke test (stable):
//! `cargo test --manifest-path fuzz/Cargo.toml` (`FUZZ_SMOKE_SECS`, `FUZZ_SMOKE_SEED`).

use bucardo_bootstrap::engine::conn::{ConnDefaults, ConnSpec};
use bucardo_bootstrap::engine::ident::{
    bucardo_cli_refusal, parse_table_list, shell_word, TableName,
};
use bucardo_bootstrap::planfile;
use std::time::{Duration, Instant};

fn defaults() -> ConnDefaults {
    ConnDefaults {
        host: Some("defhost".into()),
        port: Some(5432),
        dbname: Some("widgets".into()),
        user: Some("postgres".into()),
        ..Default::default()
    }
}

/// `ConnSpec::parse_uri`: never panics; errors are one line; a parsed spec holds no NUL byte (it
/// could reach neither libpq nor a child's argv) and survives `display_uri` (what plan files
/// store) unchanged but for the password.
pub fn check_uri(text: &str) {
    match ConnSpec::parse_uri(text, &defaults()) {
        Err(e) => {
            assert!(!e.is_empty(), "empty error for {text:?}");
            assert!(!e.contains('\n'), "multi-line error for {text:?}: {e:?}");
        }
        Ok(spec) => {
            for (what, v) in [
                ("host", &spec.host),
                ("user", &spec.user),
                ("dbname", &spec.dbname),
            ] {
                assert!(!v.contains('\0'), "{what} with a NUL byte from {text:?}");
            }
            assert!(spec.port > 0);
            let shown = spec.display_uri();
            let back = ConnSpec::parse_uri(&shown, &defaults()).unwrap_or_else(|e| {
                panic!("display_uri {shown:?} of {text:?} does not parse: {e}")
            });
            assert_eq!(
                (
                    &back.host,
                    back.port,
                    &back.dbname,
                    &back.user,
                    back.sslmode,
                    &back.sslrootcert
                ),
                (
                    &spec.host,
                    spec.port,
                    &spec.dbname,
                    &spec.user,
                    spec.sslmode,
                    &spec.sslrootcert
                ),
                "display_uri {shown:?} of {text:?}"
            );
            assert!(
                back.password.is_none(),
                "display_uri {shown:?} carries a password"
            );
            if let Some(c) = spec.bucardo_conn() {
                assert!(!c.contains('\n'), "bucardo conn {c:?}");
            }
        }
    }
}

/// `parse_table_list`: never panics; errors are one line; a parsed list is sorted and without
/// duplicates, and every name survives SQL quoting, display and shell quoting.
pub fn check_table_list(text: &str) {
    match parse_table_list(text) {
        Err(e) => assert!(!e.contains('\n'), "multi-line error for {text:?}: {e:?}"),
        Ok(list) => {
            assert!(!list.is_empty());
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "not sorted and unique: {list:?}"
            );
            for t in &list {
                check_table_name(t, text);
            }
            let joined = list
                .iter()
                .map(TableName::sql)
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                parse_table_list(&joined).as_ref(),
                Ok(&list),
                "{joined:?} from {text:?}"
            );
        }
    }
}

fn check_table_name(t: &TableName, text: &str) {
    assert!(
        !t.schema.is_empty() && !t.name.is_empty(),
        "{t:?} from {text:?}"
    );
    let sql = t.sql();
    assert_eq!(
        parse_table_list(&sql),
        Ok(vec![t.clone()]),
        "{sql:?} from {text:?}"
    );
    assert_eq!(TableName::parse(&sql).as_ref(), Ok(t), "{sql:?}");
    let shown = t.to_string();
    assert!(
        !shown.contains(char::is_control),
        "{shown:?} prints on more than one line"
    );
    let raw = t.raw();
    let word = shell_word(&raw);
    match word.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
        Some(inner) => assert_eq!(inner.replace(r"'\''", "'"), raw, "{word:?}"),
        None => assert!(
            !raw.is_empty()
                && raw
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)),
            "{word:?} left bare"
        ),
    }
    if bucardo_cli_refusal(t).is_none() {
        for part in [&t.schema, &t.name] {
            assert!(!part.starts_with('-'), "{t:?} accepted for Bucardo");
            assert!(
                !part.contains(['.', '=', '*', '%', '"', '\'', '\n', ';', '$', '`']),
                "{t:?} accepted for Bucardo"
            );
        }
    }
}

/// `planfile::parse`: never panics; errors are reported, not panics; a plan file that loads
/// saves to a file that loads back to the same draft, and building settings from it never panics.
pub fn check_planfile(text: &str) {
    if let Ok(draft) = planfile::parse(text) {
        let saved = planfile::save_draft(&draft)
            .unwrap_or_else(|e| panic!("a loaded draft does not save: {e}: {draft:?}"));
        let back = planfile::parse(&saved)
            .unwrap_or_else(|e| panic!("saved plan {saved:?} does not load: {e:#}"));
        assert_eq!(back, draft, "{saved}");
        let _ = draft.build();
    }
}

/// Inputs that reach deep into each parser, for the smoke test and as cargo-fuzz seeds.
pub const URI_SEEDS: &[&str] = &[
    "postgres://bob:p%40ss@db.example:5433/app?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    "postgresql://",
    "postgres://[::1]:7000/x?connect_timeout=3",
    "postgres://u@%2Ftmp%2Fsock/db",
    "postgres://h/db?host=other&port=6000&user=x&dbname=y&password=zzzz&application_name=a",
    "postgres://a:b:c@h:1/d?sslmode=allow",
    "postgres://u@h/d%C3%A9?sslrootcert=%2Fa%20b%2Fca.crt",
    // Found by cargo-fuzz (fixed): a socket path with ':' in `host=`, and empty parameters.
    "postgres://h/db?host=//bob:p%40:5433/app?stgresswol",
    "postgres://h/db?host=zzzz&dbname=&password=",
    "postgres://u@h/d%C3%A9?sslrootcert=%2\nFa%20b%2Fca.crt",
    "postgres://စ[::1]:7000/x?connect_timeout=3",
];

pub const TABLE_SEEDS: &[&str] = &[
    "public.foo, bar,\"Sales\".\"Order Items\",\"a,b\".\"c.d\"",
    "\"we\"\"ird\".\"x\"",
    "all",
    "a.b.c",
    "\"\"\"\".\"-x\"",
    "ünï.表",
];

pub const PLANFILE_SEEDS: &[&str] = &[
    "format = 1\n[settings]\nhere = \"postgres://postgres@h:5432/widgets\"\nthere = \"postgres://postgres@t:5432/widgets\"\nbucardo_db = \"postgres://bucardo@h:5432/bucardo\"\nbucardo_user = \"bucardo\"\nbucardo_piddir = \"/run/b\"\nbucardo_logdir = \"/var/log/b\"\nlog_dir = \"/tmp/s\"\ntables = \"public.foo\"\nhere_name = \"herewidgets\"\nthere_name = \"therewidgets\"\nsync = \"mysync\"\nrelgroup = \"myrels\"\ndbgroup = \"mydbs\"\ncopy_roles = false\nsequences = \"interleave\"\njobs = 2\nkick_timeout_s = 600\n",
    "format = 99\n[settings]\n",
    "garbage",
];

/// Pieces the generator strings together: syntax of each format, escapes, and troublemakers.
const TOKENS: &[&str] = &[
    "postgres://",
    "postgresql://",
    "@",
    ":",
    "/",
    "?",
    "&",
    "=",
    "%",
    "%2",
    "%ZZ",
    "%00",
    "%C3%A9",
    "%FF",
    "[",
    "]",
    ",",
    ".",
    "\"",
    "\"\"",
    "'",
    " ",
    "\n",
    "\t",
    "\0",
    "\\",
    "sslmode",
    "sslrootcert",
    "host",
    "port",
    "user",
    "dbname",
    "password",
    "connect_timeout",
    "require",
    "verify-full",
    "0",
    "65535",
    "65536",
    "99999999999999999999",
    "-",
    "é",
    "表",
    "\u{1b}",
    "$",
    "`",
    ";",
    "*",
    "format = 1\n",
    "[settings]\n",
    "here = ",
    "tables = ",
    "jobs = ",
    "= \"",
    "\"\n",
    "[[x]]",
    "{",
    "}",
    "true",
    "1e9",
    "-1",
    "9223372036854775807",
    "18446744073709551615",
];

/// xorshift64*: deterministic, so a failure reproduces from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One input: a seed mutated by splicing tokens and random characters in, or tokens alone.
pub fn generate(rng: &mut Rng, seeds: &[&str]) -> String {
    let mut s: Vec<char> = if rng.below(4) == 0 {
        Vec::new()
    } else {
        seeds[rng.below(seeds.len())].chars().collect()
    };
    for _ in 0..1 + rng.below(8) {
        let at = if s.is_empty() {
            0
        } else {
            rng.below(s.len() + 1)
        };
        match rng.below(5) {
            0 if !s.is_empty() => {
                let end = (at + 1 + rng.below(4)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
                s.insert(at, c);
            }
            _ => {
                let t: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                s.splice(at..at, t);
            }
        }
    }
    s.into_iter().collect()
}

/// Runs `check` on generated inputs for `budget`; returns how many. A failing input is printed
/// (escaped) before the panic propagates.
pub fn smoke(name: &str, seed: u64, budget: Duration, seeds: &[&str], check: fn(&str)) -> u64 {
    for s in seeds {
        check(s);
    }
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < budget {
        let input = generate(&mut rng, seeds);
        let result = std::panic::catch_unwind(|| check(&input));
        if let Err(e) = result {
            eprintln!("{name}: failing input {input:?} (seed {seed}, case {n})");
            std::panic::resume_unwind(e);
        }
        n += 1;
    }
    n
}
