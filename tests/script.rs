//! The bash script that `plan --script` writes, run with bash against fresh clusters, bootstraps
//! replication by itself: the tool is only used to write it.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn plan_script_bootstraps_fresh_clusters() {
    let sb = sandbox_with_widgets(1);
    let script = sb.root.join("bootstrap.sh");
    let out = tool(&sb)
        .arg("plan")
        .args(conn_flags(&sb, "all"))
        .arg("--script")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let review = String::from_utf8_lossy(&out.stdout);
    assert!(review.contains("add sync mysync"), "{review}");
    assert!(!review.contains(&sb.password) && !review.contains(BUCARDO_PASS));
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write("/tmp/last-bootstrap.sh", &text).ok();
    assert!(
        !text.contains(&sb.password) && !text.contains(BUCARDO_PASS),
        "the script holds a password"
    );
    // `plan` changed nothing: THERE has no widgets database, HERE no bucardo database.
    assert_eq!(
        sb.there
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'widgets'"
            )
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        sb.here
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'bucardo'"
            )
            .unwrap()
            .trim(),
        "0"
    );

    let out = run_script(&sb, &script);
    if !out.status.success() && std::env::var_os("KEEP_SANDBOX").is_some() {
        eprintln!(
            "kept {}: here {} there {}",
            sb.root.display(),
            sb.here.port,
            sb.there.port
        );
        std::mem::forget(sb);
        panic!("the script failed");
    }
    assert!(out.status.success(), "the script failed: {}", show(&out));
    // Replicating: a write on either side arrives on the other.
    sb.here
        .psql(
            "widgets",
            "INSERT INTO public.foo (name) VALUES ('from-here-after-script')",
        )
        .unwrap();
    sb.there
        .psql(
            "widgets",
            "INSERT INTO public.foo (name) VALUES ('from-there-after-script')",
        )
        .unwrap();
    wait_identical(&sb, Duration::from_secs(60)).expect("both sides converge after the script");
    let n = sb
        .there
        .psql(
            "widgets",
            "SELECT count(*) FROM public.foo WHERE name LIKE 'from-%-after-script'",
        )
        .unwrap();
    assert_eq!(n.trim(), "2");
}
