//! The sample `widgets` database (`assets/widgets.sql`): creating and loading it into a
//! sandbox cluster, and the facts about it that tests rely on; and the adversarial identifiers
//! that the quoting unit tests and the security tests both push through the tool.

use anyhow::{Context, Result};

use super::cluster::Cluster;

/// The schema and data generator, run by psql with the variable `scale`.
pub const WIDGETS_SQL: &str = include_str!("../../assets/widgets.sql");

/// Every table of `widgets` (qualified, quoted as SQL needs) with its row count at scale 1.
pub const WIDGETS_TABLES: &[(&str, u64)] = &[
    ("public.foo", 10_000),
    ("public.bar", 20_000),
    ("public.customers", 10_000),
    ("public.orders", 40_000),
    ("public.events", 20_000),
    ("\"Sales\".\"Order Items\"", 20_000),
    ("public.audit_log", 5_000),
];

/// The table without a primary key or unique index.
pub const TABLE_WITHOUT_KEY: &str = "public.audit_log";

/// Creates database `db` on `cluster` and loads `widgets` into it: about 125k rows per unit of
/// `scale`; `scale = 0` creates the schema only. Ends with `ANALYZE` so row estimates are right.
pub fn load_widgets(cluster: &Cluster, db: &str, scale: u32) -> Result<()> {
    cluster.psql("postgres", &format!("CREATE DATABASE {}", quote_ident(db)))?;
    cluster
        .psql_script(db, WIDGETS_SQL, &[("scale", &scale.to_string())])
        .with_context(|| format!("loading widgets (scale {scale}) into {}/{db}", cluster.name))?;
    cluster.psql(db, "ANALYZE")?;
    Ok(())
}

/// `"name"` with inner double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Names PostgreSQL can hold that an attacker or an unlucky schema could choose: quotes, shell
/// and SQL metacharacters, control characters, non-ASCII, keywords, and the longest names
/// PostgreSQL keeps. For the quoting unit tests and the security tests.
pub fn adversarial_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "plain",
        "we\"ird",
        "\"",
        "\"\"",
        "it's",
        "'",
        "with space",
        " leading and trailing ",
        "semi;colon",
        "dollar$name",
        "$(touch /tmp/pwned)",
        "${HOME}",
        "`id`",
        "new\nline",
        "tab\there",
        "cr\rhere",
        "\u{1b}[2J\u{1b}[31mred",
        "ünïcødé",
        "表格",
        "Ünï Cödé",
        "UPPER",
        "MixedCase",
        "select",
        "user",
        "table",
        "order",
        "-leading",
        "trailing-",
        "--",
        "-",
        "a.b",
        "a,b",
        "a=b",
        "a*",
        "50%",
        "back\\slash",
        "#hash",
        "!bang",
        "x>y<z|w&v",
        "(paren)",
        "9starts_with_digit",
        "tbl²",
        "e\u{301}",
        "*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(63));
    // 63 bytes of two-byte characters and one ASCII byte: the longest name PostgreSQL keeps.
    v.push(format!("{}x", "é".repeat(31)));
    v.push(format!("{}\"", "q".repeat(62)));
    v
}
