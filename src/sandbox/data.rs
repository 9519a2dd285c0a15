//! The sample `widgets` database (`assets/widgets.sql`): creating and loading it into a
//! sandbox cluster, and the facts about it that tests rely on.

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
