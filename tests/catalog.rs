//! The catalog against the zoo (`assets/zoo.sql`) on a real cluster: every trap is reported with
//! the right trait, and eligibility gives the reason and the fix.

mod zoo;

use bucardo_bootstrap::engine::catalog::{
    list_tables, list_tables_on, server_info, KeyKind, TableInfo,
};
use bucardo_bootstrap::engine::conn::Side;
use bucardo_bootstrap::engine::ident::TableName;

fn find<'a>(all: &'a [TableInfo], schema: &str, name: &str) -> &'a TableInfo {
    all.iter()
        .find(|t| t.name == TableName::new(schema, name))
        .unwrap_or_else(|| panic!("{schema}.{name} is listed"))
}

fn public<'a>(all: &'a [TableInfo], name: &str) -> &'a TableInfo {
    find(all, "public", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoo_traits_and_eligibility() {
    let sb = tokio::task::spawn_blocking(zoo::zoo_sandbox).await.unwrap();
    let s = zoo::settings(&sb, "all");
    let c = s.here.connect(Side::Here).await.unwrap();
    let info = server_info(&c, Side::Here).await.unwrap();
    assert!(info.is_superuser && info.version_num >= 150000, "{info:?}");

    let all = list_tables(&c, Side::Here, None).await.unwrap();
    let names: Vec<String> = all.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(all.len(), 18, "{names:?}");
    // Shared out between two sessions, the listing is the same, and each session gets its
    // setting back.
    let second = s.here.connect(Side::Here).await.unwrap();
    let workers = "SHOW max_parallel_workers_per_gather";
    second
        .batch_execute("SET max_parallel_workers_per_gather = 1")
        .await
        .unwrap();
    assert_eq!(
        list_tables_on(&c, &second, Side::Here, None).await.unwrap(),
        all
    );
    for (session, expected) in [(&c, "2"), (&second, "1")] {
        let rows = session.simple_query(workers).await.unwrap();
        let shown = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(shown.as_deref(), Some(expected));
    }

    // Keys.
    let keyed = public(&all, "keyed");
    assert_eq!(
        (keyed.key_kind, keyed.key_columns.clone()),
        (KeyKind::Primary, vec!["id".to_string()])
    );
    assert!(keyed.is_eligible() && keyed.est_rows == 50 && keyed.total_bytes > 0);
    let u = public(&all, "unique_ok");
    assert_eq!(
        (u.key_kind, u.key_columns.clone()),
        (KeyKind::Unique, vec!["code".into(), "part".into()])
    );
    assert!(u.is_eligible());
    for (table, why) in [
        ("no_key", "no primary key or usable unique index"),
        (
            "partial_unique",
            "unique index partial_unique_active is partial",
        ),
        (
            "nullable_unique",
            "unique index nullable_unique_email_key has nullable column(s) email",
        ),
        (
            "expr_unique",
            "unique index expr_unique_lower indexes an expression",
        ),
    ] {
        let t = public(&all, table);
        assert_eq!(t.key_kind, KeyKind::None, "{table}");
        let e = t.eligibility().unwrap_err();
        assert!(
            e.contains(why) && e.contains("ADD PRIMARY KEY"),
            "{table}: {e}"
        );
    }
    assert!(public(&all, "no_key").key_rejections.is_empty());
    let fix = public(&all, "nullable_unique").blockers()[0]
        .fix
        .clone()
        .unwrap();
    assert_eq!(
        fix,
        r#"ALTER TABLE "public"."nullable_unique" ADD PRIMARY KEY ("email");"#
    );

    // Partitions.
    let parent = public(&all, "measurements");
    assert_eq!(parent.relkind, 'p');
    assert_eq!(
        parent.partitions,
        vec![
            TableName::new("public", "measurements_2024"),
            TableName::new("public", "measurements_2025")
        ]
    );
    let e = parent.eligibility().unwrap_err();
    assert!(
        e.contains("leaf partitions: public.measurements_2024, public.measurements_2025"),
        "{e}"
    );
    assert!(
        e.contains("--tables public.measurements_2024,public.measurements_2025"),
        "{e}"
    );
    let leaf = public(&all, "measurements_2024");
    assert!(leaf.is_partition && leaf.relkind == 'r');
    assert_eq!(
        leaf.partition_root,
        Some(TableName::new("public", "measurements"))
    );
    assert_eq!(leaf.key_kind, KeyKind::Primary);
    assert!(leaf.is_eligible(), "{:?}", leaf.eligibility());

    // Generated columns, large objects, odd names.
    let g = public(&all, "generated_col");
    assert_eq!(
        g.columns
            .iter()
            .filter(|c| c.generated)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["total"]
    );
    assert_eq!(g.copy_columns().len(), 3);
    let e = g.eligibility().unwrap_err();
    assert!(
        e.contains("generated column(s) total") && e.contains("DROP EXPRESSION"),
        "{e}"
    );
    let b = public(&all, "blobs");
    assert_eq!(b.large_object_columns, ["raw_oid", "doc"]);
    assert!(b.is_eligible());
    assert!(b.cautions()[0].reason.contains("large-object"));
    let w = public(&all, "we\"ird");
    let e = w.eligibility().unwrap_err();
    assert!(
        e.contains("Bucardo's CLI") && e.contains(r#"RENAME TO "we_ird""#),
        "{e}"
    );
    let mixed = find(&all, "Mixed Case", "Order Items");
    assert!(mixed.is_eligible());
    assert_eq!(mixed.key_columns, ["Order Id", "Line No"]);
    assert_eq!(mixed.name.sql(), r#""Mixed Case"."Order Items""#);

    // Unlogged, triggers, foreign keys.
    let un = public(&all, "unlogged_t");
    assert!(un.unlogged && un.is_eligible());
    assert!(un.cautions()[0]
        .fix
        .as_deref()
        .unwrap()
        .contains("SET LOGGED"));
    assert!(!keyed.unlogged && keyed.cautions().is_empty());
    let tr = public(&all, "triggered");
    assert_eq!(tr.user_triggers, ["triggered_touch"]);
    assert!(tr.cautions()[0].reason.contains("do not fire"));
    let orders = public(&all, "orders");
    let customers = public(&all, "customers");
    assert_eq!(orders.fk_out, [TableName::new("public", "customers")]);
    assert!(orders.fk_in.is_empty());
    assert_eq!(customers.fk_in, [TableName::new("public", "orders")]);
    assert!(customers.fk_out.is_empty());

    // Sequences: identity, serial and a default calling nextval.
    let seqs = public(&all, "seqs");
    let mut uses: Vec<(String, String)> = seqs
        .sequences
        .iter()
        .map(|u| (u.column.clone(), u.sequence.to_string()))
        .collect();
    uses.sort();
    assert_eq!(
        uses,
        [
            ("d".to_string(), "public.shared_seq".to_string()),
            ("id".into(), "public.seqs_id_seq".into()),
            ("s".into(), "public.seqs_s_seq".into()),
        ]
    );
    assert_eq!(keyed.sequences.len(), 1);

    // The filter takes raw names, mixed case and quotes included.
    let only = [
        TableName::new("Mixed Case", "Order Items"),
        TableName::new("public", "we\"ird"),
    ];
    let some = list_tables(&c, Side::Here, Some(&only)).await.unwrap();
    assert_eq!(
        some.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        only
    );

    let eligible: Vec<String> = all
        .iter()
        .filter(|t| t.is_eligible())
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        eligible,
        [
            r#""Mixed Case"."Order Items""#,
            "public.blobs",
            "public.customers",
            "public.keyed",
            "public.measurements_2024",
            "public.measurements_2025",
            "public.orders",
            "public.seqs",
            "public.triggered",
            "public.unique_ok",
            "public.unlogged_t",
        ]
    );
}

/// Which tables exist and which hold rows, as the checks and the plan's probe ask THERE: a heap
/// with pages is looked into (rows deleted leave pages behind), one without is empty, and a role
/// that may not stat files gets the same answer another way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_tells_tables_with_rows_from_empty_ones() {
    use bucardo_bootstrap::engine::catalog::{list_shapes, presence, Presence};
    use bucardo_bootstrap::engine::secret::Secret;
    let sb = tokio::task::spawn_blocking(zoo::zoo_sandbox).await.unwrap();
    sb.here
        .psql(
            "zoo",
            r#"CREATE SCHEMA pres;
               CREATE TABLE pres.filled (id int PRIMARY KEY);
               INSERT INTO pres.filled VALUES (1);
               CREATE TABLE pres.never (id int PRIMARY KEY);
               CREATE TABLE pres.deleted (id int PRIMARY KEY);
               INSERT INTO pres.deleted SELECT generate_series(1, 100);
               DELETE FROM pres.deleted;
               CREATE TABLE pres.truncated (id int PRIMARY KEY);
               INSERT INTO pres.truncated VALUES (1);
               TRUNCATE pres.truncated;
               CREATE TABLE pres.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
               CREATE TABLE pres.parted_1 PARTITION OF pres.parted FOR VALUES FROM (0) TO (10);
               INSERT INTO pres.parted VALUES (1);
               CREATE TABLE pres."Odd.Name" ("x y" int PRIMARY KEY);
               INSERT INTO pres."Odd.Name" VALUES (1);
               CREATE VIEW pres.a_view AS SELECT 1 AS one;
               CREATE ROLE reader LOGIN PASSWORD 'reader-pass-9';
               GRANT USAGE ON SCHEMA pres TO reader;
               GRANT SELECT ON ALL TABLES IN SCHEMA pres TO reader;"#,
        )
        .unwrap();
    let n = |name: &str| TableName::new("pres", name);
    let asked = vec![
        n("parted"),
        n("filled"),
        n("missing"),
        n("never"),
        n("a_view"),
        n("deleted"),
        n("truncated"),
        n("parted_1"),
        n("Odd.Name"),
    ];
    let expected = Presence {
        existing: vec![
            n("parted"),
            n("filled"),
            n("never"),
            n("deleted"),
            n("truncated"),
            n("parted_1"),
            n("Odd.Name"),
        ],
        nonempty: vec![n("filled"), n("parted_1"), n("Odd.Name")],
    };
    let s = zoo::settings(&sb, "all");
    let superuser = s.here.connect(Side::Here).await.unwrap();
    let reader = s
        .here
        .with_user("reader", Some(Secret::new("reader-pass-9")))
        .connect(Side::Here)
        .await
        .unwrap();
    let stat = "SELECT has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')";
    for (who, c, may_stat) in [("postgres", &superuser, true), ("reader", &reader, false)] {
        let can: bool = c.query_one(stat, &[]).await.unwrap().get(0);
        assert_eq!(can, may_stat, "{who}");
        let found = presence(c, Side::Here, &asked, true).await.unwrap();
        assert_eq!(found, expected, "as {who}");
        let without_rows = presence(c, Side::Here, &asked, false).await.unwrap();
        assert_eq!(without_rows.existing, expected.existing, "as {who}");
        assert!(without_rows.nonempty.is_empty(), "as {who}");
    }

    // The shapes are list_tables' names and columns.
    let all = list_tables(&superuser, Side::Here, None).await.unwrap();
    let shapes = list_shapes(&superuser, Side::Here, None).await.unwrap();
    assert_eq!(
        shapes
            .iter()
            .map(|s| (&s.name, &s.columns))
            .collect::<Vec<_>>(),
        all.iter()
            .map(|t| (&t.name, &t.columns))
            .collect::<Vec<_>>()
    );
    let some = [n("filled"), n("Odd.Name"), n("nothing"), n("never")];
    for (who, c) in [("postgres", &superuser), ("reader", &reader)] {
        let shapes = list_shapes(c, Side::Here, Some(&some)).await.unwrap();
        let found: Vec<(String, bool)> = shapes
            .iter()
            .map(|s| (s.name.to_string(), s.pages))
            .collect();
        assert_eq!(
            found,
            [
                (r#""pres"."Odd.Name""#.to_string(), true),
                ("pres.filled".to_string(), true),
                ("pres.never".to_string(), false)
            ],
            "as {who}"
        );
    }
}

/// The record digest runs on every zoo table (each column type it does not hash as a value goes
/// in as text), agrees with the text digest on what is equal, and tells apart what only the text
/// tells apart: a numeric's trailing zeros, letter case under a nondeterministic collation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_digest_hashes_every_type_and_misses_no_text_difference() {
    use bucardo_bootstrap::engine::verify::{chunk_sum, Chunk, Digest};
    let sb = tokio::task::spawn_blocking(zoo::zoo_sandbox).await.unwrap();
    let s = zoo::settings(&sb, "all");
    let c = s.here.connect(Side::Here).await.unwrap();
    let whole = Chunk::default();
    for t in list_tables(&c, Side::Here, None).await.unwrap() {
        if t.relkind != 'r' {
            continue;
        }
        let rec = chunk_sum(&c, Side::Here, &t, &whole, &[], Digest::Record)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let text = chunk_sum(&c, Side::Here, &t, &whole, &[], Digest::Hash)
            .await
            .unwrap();
        assert_eq!((rec.rows, rec.kept), (text.rows, text.kept), "{}", t.name);
    }

    c.batch_execute(
        r#"CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
           CREATE TABLE public.digests (id int PRIMARY KEY, n numeric, s text COLLATE ci,
               f float8, j jsonb, at timestamptz, b bytea, c char(3));
           INSERT INTO public.digests VALUES
               (1, 1.0, 'a', 0.1, '{"x": 1.0}', '2026-12-01 10:00+01', '\x00ff', 'ab'),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"#,
    )
    .await
    .unwrap();
    let all = list_tables(&c, Side::Here, None).await.unwrap();
    let t = public(&all, "digests");
    let sum = || async {
        chunk_sum(&c, Side::Here, t, &whole, &[], Digest::Record)
            .await
            .unwrap()
            .sum
    };
    let first = sum().await;
    assert_eq!(first, sum().await, "the same rows, the same sum");
    for (change, back) in [
        ("n = 1.00", "n = 1.0"),
        ("s = 'A'", "s = 'a'"),
        ("f = -0.1", "f = 0.1"),
        (r#"j = '{"x": 1.00}'"#, r#"j = '{"x": 1.0}'"#),
        (
            "at = at + interval '1 microsecond'",
            "at = '2026-12-01 10:00+01'",
        ),
        (r"b = '\x00fe'", r"b = '\x00ff'"),
        ("c = 'abc'", "c = 'ab'"),
        ("n = 0", "n = NULL"),
    ] {
        let id = if change == "n = 0" { 2 } else { 1 };
        c.batch_execute(&format!(
            "UPDATE public.digests SET {change} WHERE id = {id}"
        ))
        .await
        .unwrap();
        assert_ne!(sum().await, first, "{change} changes the sum");
        c.batch_execute(&format!("UPDATE public.digests SET {back} WHERE id = {id}"))
            .await
            .unwrap();
        assert_eq!(sum().await, first, "{back} restores it");
    }
}
