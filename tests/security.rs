//! Security against real PostgreSQL (and Bucardo for the end-to-end run): TLS for every sslmode
//! against a cluster with `ssl = on` and a CA made here with the openssl CLI; no password in any
//! process's argv, file or output during a real `run --yes`; adversarial table names through the
//! catalog, the eligibility check and the checksum SQL.

mod common;

use bucardo_bootstrap::engine::catalog::list_tables;
use bucardo_bootstrap::engine::conn::{ConnDefaults, ConnSpec, Passfile, Side, SslMode};
use bucardo_bootstrap::engine::error::EngineError;
use bucardo_bootstrap::engine::ident::{bucardo_cli_refusal, quote_ident, TableName};
use bucardo_bootstrap::engine::process::{self, pg_tool, Invocation};
use bucardo_bootstrap::engine::verify;
use bucardo_bootstrap::sandbox::Cluster;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "tls-cluster-pass-31";

/// One cluster of its own, stopped and removed when dropped.
struct OwnCluster {
    cluster: Cluster,
    root: PathBuf,
}

impl OwnCluster {
    fn start(name: &str) -> OwnCluster {
        bucardo_bootstrap::sandbox::require_tools().expect("PostgreSQL 15 must be installed");
        let root = tempfile::Builder::new()
            .prefix("bb-sec-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cluster = Cluster::create(name, &root, PASSWORD).expect("cluster starts");
        OwnCluster { cluster, root }
    }

    fn spec(&self, host: &str, mode: SslMode, ca: Option<&Path>) -> ConnSpec {
        let mut s = ConnSpec::parse_uri(
            &format!(
                "postgres://postgres@{host}:{}/postgres?connect_timeout=5",
                self.cluster.port
            ),
            &ConnDefaults::default(),
        )
        .unwrap();
        s.password = Some(bucardo_bootstrap::engine::secret::Secret::new(PASSWORD));
        s.sslmode = mode;
        s.sslrootcert = ca.map(Path::to_path_buf);
        s
    }

    /// Appends lines to a server file as root and reloads.
    fn append_and_reload(&self, file: &str, text: &str, prepend: bool) {
        let path = self.cluster.data_dir.join(file);
        let old = std::fs::read_to_string(&path).unwrap();
        let new = if prepend {
            format!("{text}\n{old}")
        } else {
            format!("{old}\n{text}\n")
        };
        std::fs::write(&path, new).unwrap();
        self.cluster
            .psql("postgres", "SELECT pg_reload_conf()")
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop_immediate();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.crt`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.crt"))
}

/// A server certificate signed by `ca` for the given subjectAltName, as `<name>.crt/.key`.
fn make_server_cert(dir: &Path, ca: &str, name: &str, san: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=bucardo-bootstrap test server",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// Points the server at `<name>.crt/.key` (copied into the data directory, owned by the server's
/// OS user) and turns ssl on.
fn use_server_cert(c: &OwnCluster, certs: &Path, name: &str) {
    for ext in ["crt", "key"] {
        let dst = c.cluster.data_dir.join(format!("{name}.{ext}"));
        std::fs::copy(certs.join(format!("{name}.{ext}")), &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        if bucardo_bootstrap::sandbox::cluster::is_root() {
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dst)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{name}.crt'"),
        format!("ALTER SYSTEM SET ssl_key_file = '{name}.key'"),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        c.cluster.psql("postgres", &sql).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.cluster.psql("postgres", "SHOW ssl").unwrap().trim(),
        "on",
        "{}",
        c.cluster.log_tail(10)
    );
}

/// Connects and says whether the session is encrypted, or the error's text.
async fn encrypted(spec: &ConnSpec) -> Result<bool, String> {
    let client = spec.connect(Side::Here).await.map_err(|e| e.one_line())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_follows_libpq_sslmodes() {
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(
        std::env::var_os("PGSSLROOTCERT").is_none()
            && !Path::new(&home).join(".postgresql/root.crt").exists(),
        "this test needs no default root certificate (PGSSLROOTCERT or ~/.postgresql/root.crt)"
    );
    let c = tokio::task::spawn_blocking(|| OwnCluster::start("tls"))
        .await
        .unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca = make_ca(certs.path(), "ca");
    let other_ca = make_ca(certs.path(), "otherca");
    make_server_cert(certs.path(), "ca", "server", "DNS:localhost,IP:127.0.0.1");
    make_server_cert(certs.path(), "ca", "misnamed", "DNS:db.example.invalid");

    // ssl = off: require says what to do, prefer and allow connect in the clear.
    let e = encrypted(&c.spec("127.0.0.1", SslMode::Require, None))
        .await
        .unwrap_err();
    assert!(
        e.contains("does not offer TLS") && e.contains("enable ssl"),
        "{e}"
    );
    assert_eq!(
        encrypted(&c.spec("127.0.0.1", SslMode::Prefer, None)).await,
        Ok(false)
    );
    assert_eq!(
        encrypted(&c.spec("127.0.0.1", SslMode::Allow, None)).await,
        Ok(false)
    );

    let c2 = &c;
    let certs2 = certs.path().to_path_buf();
    tokio::task::block_in_place(|| use_server_cert(c2, &certs2, "server"));

    for host in ["127.0.0.1", "localhost"] {
        assert_eq!(
            encrypted(&c.spec(host, SslMode::Disable, None)).await,
            Ok(false),
            "disable {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::Allow, None)).await,
            Ok(false),
            "allow {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::Prefer, None)).await,
            Ok(true),
            "prefer {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::Require, None)).await,
            Ok(true),
            "require {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::Require, Some(&ca))).await,
            Ok(true),
            "require+CA {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::VerifyCa, Some(&ca))).await,
            Ok(true),
            "verify-ca {host}"
        );
        assert_eq!(
            encrypted(&c.spec(host, SslMode::VerifyFull, Some(&ca))).await,
            Ok(true),
            "verify-full {host}"
        );
    }

    // verify-full without a CA: refused before connecting, with what to do.
    let err = c
        .spec("127.0.0.1", SslMode::VerifyFull, None)
        .connect(Side::There)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Config(_)), "{err:?}");
    let e = err.one_line();
    assert!(
        e.contains("THERE") && e.contains("sslrootcert=") && e.contains("sslmode=require"),
        "{e}"
    );
    let e = encrypted(&c.spec("127.0.0.1", SslMode::VerifyCa, None))
        .await
        .unwrap_err();
    assert!(e.contains("sslrootcert="), "{e}");
    // A CA that did not sign the server's certificate: verify-*, and require with a root cert.
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
        let e = encrypted(&c.spec("127.0.0.1", mode, Some(&other_ca)))
            .await
            .unwrap_err();
        assert!(
            e.contains("not signed by the CA in") && e.contains("otherca.crt"),
            "{mode:?}: {e}"
        );
    }
    // prefer falls back to plain when the handshake fails, as libpq does.
    assert_eq!(
        encrypted(&c.spec("127.0.0.1", SslMode::Prefer, Some(&other_ca))).await,
        Ok(false)
    );
    // A root certificate file that is missing or not PEM.
    let e = encrypted(&c.spec(
        "127.0.0.1",
        SslMode::VerifyFull,
        Some(Path::new("/nonexistent/ca.crt")),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("/nonexistent/ca.crt") && e.contains("PEM file of the CA"),
        "{e}"
    );
    let junk = certs.path().join("junk.crt");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = encrypted(&c.spec("127.0.0.1", SslMode::VerifyFull, Some(&junk)))
        .await
        .unwrap_err();
    assert!(e.contains("holds no certificate"), "{e}");

    // Child tools get the same settings through their environment.
    let pfdir = tempfile::tempdir().unwrap();
    let full = c.spec("127.0.0.1", SslMode::VerifyFull, Some(&ca));
    let pf = Passfile::write(&pfdir.path().join("pf"), &[&full], true).unwrap();
    let psql = |spec: &ConnSpec| {
        Invocation::new([
            pg_tool("psql"),
            "-X".into(),
            "-At".into(),
            "-h".into(),
            spec.host.clone(),
            "-p".into(),
            spec.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-d".into(),
            "postgres".into(),
            "-c".into(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()".into(),
        ])
        .envs(spec.child_env())
        .passfile(pf.path())
    };
    let out = process::run(&psql(&full), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!((out.status, out.stdout.trim()), (0, "t"), "{out:?}");
    let out = process::run(
        &psql(&c.spec("127.0.0.1", SslMode::VerifyFull, Some(&other_ca))),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_ne!(out.status, 0, "psql must refuse the other CA too: {out:?}");
    assert_eq!(
        full.bucardo_conn().as_deref(),
        Some(format!("sslmode=verify-full sslrootcert={}", ca.display()).as_str())
    );

    // A certificate that does not name the host: verify-full refuses, verify-ca accepts.
    tokio::task::block_in_place(|| use_server_cert(c2, &certs2, "misnamed"));
    let e = encrypted(&c.spec("127.0.0.1", SslMode::VerifyFull, Some(&ca)))
        .await
        .unwrap_err();
    assert!(
        e.contains("does not name \"127.0.0.1\"") && e.contains("verify-ca"),
        "{e}"
    );
    assert_eq!(
        encrypted(&c.spec("127.0.0.1", SslMode::VerifyCa, Some(&ca))).await,
        Ok(true)
    );

    // A server that takes only encrypted connections: allow retries with TLS, disable cannot.
    tokio::task::block_in_place(|| {
        c2.append_and_reload("pg_hba.conf", "hostnossl all all 0.0.0.0/0 reject", true)
    });
    assert_eq!(
        encrypted(&c.spec("127.0.0.1", SslMode::Allow, None)).await,
        Ok(true)
    );
    let e = encrypted(&c.spec("127.0.0.1", SslMode::Disable, None))
        .await
        .unwrap_err();
    assert!(e.contains("no encryption"), "{e}");
}

/// Every process's argv (and, apart from `skip_env` pids, environment) seen while sampling.
#[derive(Default)]
struct Sightings {
    samples: usize,
    processes: BTreeSet<String>,
    argv_leaks: BTreeSet<String>,
    env_leaks: BTreeSet<String>,
}

/// Samples `/proc/*/cmdline` and `/proc/*/environ` every ~20 ms until stopped.
struct ProcSampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Sightings>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcSampler {
    /// `needles` must never appear in any argv; `env_needles` in no environment except those of
    /// the processes `skip_env` says are the operator's own (the tool and this test).
    fn start(
        needles: Vec<String>,
        env_needles: Vec<String>,
        skip_env: Arc<Mutex<Vec<u32>>>,
    ) -> ProcSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let me = std::process::id();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let mut s = seen2.lock().unwrap();
                s.samples += 1;
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Some(pid) = entry
                        .file_name()
                        .to_str()
                        .and_then(|p| p.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if let Some(first) = argv.split_whitespace().next() {
                        s.processes
                            .insert(first.rsplit('/').next().unwrap_or(first).to_string());
                    }
                    for n in &needles {
                        if argv.contains(n.as_str()) {
                            s.argv_leaks.insert(format!("pid {pid}: {argv}"));
                        }
                    }
                    // The tool holds the operator's passwords in its environment; so does a child
                    // of it between fork and exec, which still shows the tool's argv. Any build
                    // of the tool counts: another checkout's tests may be running on this machine.
                    let is_tool = argv.starts_with(TOOL)
                        || argv
                            .split_whitespace()
                            .next()
                            .is_some_and(|a0| a0.ends_with("/bucardo-bootstrap"));
                    if pid == me || skip_env.lock().unwrap().contains(&pid) || is_tool {
                        continue;
                    }
                    let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                        continue;
                    };
                    let environ = String::from_utf8_lossy(&environ);
                    for n in &env_needles {
                        if environ.contains(n.as_str()) {
                            s.env_leaks
                                .insert(format!("pid {pid} ({argv}) has {n:?} in its environment"));
                        }
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ProcSampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Sightings {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Every file under `dir`, recursively, with its mode; and every directory's mode.
fn walk(dir: &Path, files: &mut Vec<(PathBuf, u32)>, dirs: &mut Vec<(PathBuf, u32)>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    dirs.push((dir.to_path_buf(), meta.permissions().mode() & 0o777));
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            walk(&e.path(), files, dirs);
        } else if m.is_file() {
            files.push((e.path(), m.permissions().mode() & 0o777));
        }
    }
}

fn contains_bytes(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const TOOL: &str = env!("CARGO_BIN_EXE_bucardo-bootstrap");

const SUPER_PASS: &str = "Super-Leak-Probe-6173";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_leaks_during_a_real_run() {
    use bucardo_bootstrap::sandbox::{data, Sandbox, SandboxOptions};
    let sb = tokio::task::spawn_blocking(|| {
        bucardo_bootstrap::sandbox::require_tools()
            .expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
        let sb = Sandbox::start(SandboxOptions {
            password: SUPER_PASS.into(),
            ..Default::default()
        })
        .unwrap();
        data::load_widgets(&sb.here, "widgets", 1).unwrap();
        sb
    })
    .await
    .unwrap();
    let secrets = vec![SUPER_PASS.to_string(), common::BUCARDO_PASS.to_string()];
    let env_secrets: Vec<String> = secrets.iter().map(|s| format!("={s}")).collect();
    let tool_pids = Arc::new(Mutex::new(Vec::new()));
    let sampler = ProcSampler::start(secrets.clone(), env_secrets, tool_pids.clone());

    let script = sb.root.join("bootstrap.sh");
    let plan_file = sb.root.join("plan.toml");
    let run = |args: Vec<String>| {
        let mut cmd = common::tool(&sb);
        cmd.args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        tool_pids.lock().unwrap().push(child.id());
        child.wait_with_output().unwrap()
    };
    let mut plan_args: Vec<String> = vec![
        "plan".into(),
        "--script".into(),
        script.display().to_string(),
    ];
    plan_args.extend(["--save".into(), plan_file.display().to_string()]);
    plan_args.extend(common::conn_flags(&sb, "all"));
    let plan_out = tokio::task::block_in_place(|| run(plan_args));
    assert!(plan_out.status.success(), "{}", common::show(&plan_out));
    let mut run_args: Vec<String> = vec!["run".into(), "--yes".into()];
    run_args.extend(common::conn_flags(&sb, "all"));
    let run_out = tokio::task::block_in_place(|| run(run_args));
    let sightings = sampler.finish();
    assert!(run_out.status.success(), "{}", common::show(&run_out));

    assert!(
        sightings.samples > 20,
        "the sampler ran {} times",
        sightings.samples
    );
    for p in ["bucardo", "pg_dump", "psql"] {
        let seen = sightings
            .processes
            .iter()
            .any(|n| n.contains(p) || n.starts_with("Bucardo"));
        assert!(
            seen,
            "no {p} process was sampled: {:?}",
            sightings.processes
        );
    }
    assert!(
        sightings.argv_leaks.is_empty(),
        "a password in argv: {:#?}",
        sightings.argv_leaks
    );
    assert!(
        sightings.env_leaks.is_empty(),
        "a password in a child's environment: {:#?}",
        sightings.env_leaks
    );

    for out in [&plan_out, &run_out] {
        for s in &secrets {
            assert!(
                !contains_bytes(&out.stdout, s) && !contains_bytes(&out.stderr, s),
                "{}",
                common::show(out)
            );
        }
    }
    assert!(String::from_utf8_lossy(&plan_out.stdout)
        .contains("UPDATE bucardo.db SET dbpass = :'bucardo_pass'"));

    // Files: nothing but the daemon's documented passfile holds a password; ours are private.
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for d in [common::state_dir(&sb), sb.piddir.clone(), sb.logdir.clone()] {
        walk(&d, &mut files, &mut dirs);
    }
    files.extend([&script, &plan_file].map(|p| {
        (
            p.clone(),
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
        )
    }));
    assert!(
        files
            .iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "log")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|(p, _)| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("journal"))),
        "{files:?}"
    );
    let mut bucardo_modes = Vec::new();
    for (path, mode) in &files {
        let text = std::fs::read(path).unwrap();
        let passfile = path.file_name().is_some_and(|n| n == "bucardo.pgpass");
        for s in &secrets {
            if passfile {
                assert!(
                    !contains_bytes(&text, SUPER_PASS),
                    "the daemon's passfile holds only Bucardo's password"
                );
            } else {
                assert!(
                    !contains_bytes(&text, s),
                    "a password in {}",
                    path.display()
                );
            }
        }
        if path.starts_with(&sb.piddir) || path.starts_with(&sb.logdir) {
            bucardo_modes.push(format!("{} {mode:o}", path.display()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        }
    }
    for (dir, mode) in &dirs {
        assert_eq!(*mode, 0o700, "{} is mode {mode:o}", dir.display());
    }
    eprintln!("Bucardo's own files (in 0700 directories): {bucardo_modes:?}");
    // The script reads the passwords from the environment when it runs.
    let script_text = std::fs::read_to_string(&script).unwrap();
    assert!(script_text.contains("\"$BUCARDOPASS\"") && script_text.contains("\"$PGPASSWORD\""));
    // The servers' logs do not hold them either (the role is created from a SCRAM verifier, and
    // Bucardo's password is a bound parameter).
    for c in [&sb.here, &sb.there] {
        let log = std::fs::read(&c.log_file).unwrap();
        for s in &secrets {
            assert!(
                !contains_bytes(&log, s),
                "a password in {}",
                c.log_file.display()
            );
        }
    }

    // Error paths: wrong passwords are not echoed back.
    for (var, wrong) in [
        ("PGPASSWORD", "Wrong-Super-Pass-8812"),
        ("BUCARDOPASS", "Wrong-Bucardo-Pass-8813"),
    ] {
        let mut cmd = common::tool(&sb);
        cmd.env(var, wrong)
            .arg("plan")
            .args(common::conn_flags(&sb, "all"));
        let out = tokio::task::block_in_place(|| cmd.output().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {}", common::show(&out));
        assert!(
            stderr.contains("password authentication failed")
                && stderr.contains("check the password"),
            "{var}: {stderr}"
        );
        // One `error:` line, or (the plan was started, so only what still matters is checked)
        // the checks' report with its closing line.
        let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
        let report = stderr.lines().any(|l| l.starts_with("preflight failed"))
            && stderr.lines().any(|l| {
                l.trim_start().starts_with("FAIL") && l.contains("password authentication failed")
            });
        assert!(errors == 1 || (errors == 0 && report), "{stderr}");
        for s in [wrong, SUPER_PASS, common::BUCARDO_PASS] {
            assert!(
                !contains_bytes(&out.stdout, s) && !stderr.contains(s),
                "{var}: {}",
                common::show(&out)
            );
        }
    }
    // A password in a URI is never shown, whatever fails.
    for here in [
        format!(
            "postgres://postgres:{SUPER_PASS}@127.0.0.1:{}/widgets",
            sb.there.port
        ),
        format!("postgres://postgres:{SUPER_PASS}@127.0.0.1:1/widgets?connect_timeout=2"),
        format!("mysql://postgres:{SUPER_PASS}@127.0.0.1/widgets"),
        format!(
            "postgres://postgres:{SUPER_PASS}@127.0.0.1:{}/widgets?sslmode=bogus",
            sb.here.port
        ),
    ] {
        let mut cmd = common::tool(&sb);
        cmd.arg("plan")
            .args(common::conn_flags(&sb, "all"))
            .args(["--here", &here]);
        let out = tokio::task::block_in_place(|| cmd.output().unwrap());
        assert!(!out.status.success(), "{here}: {}", common::show(&out));
        assert!(
            !contains_bytes(&out.stdout, SUPER_PASS) && !contains_bytes(&out.stderr, SUPER_PASS),
            "{}",
            common::show(&out)
        );
    }
}

/// The random passwords `bucardo install` and `bucardo add db` print when they create the
/// `bucardo` role themselves come out of our child-process runner masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucardo_printed_passwords_are_masked() {
    use bucardo_bootstrap::engine::bucardo::{BucardoCli, BucardoCmd};
    let (ctl, tgt) =
        tokio::task::spawn_blocking(|| (OwnCluster::start("ctl"), OwnCluster::start("tgt")))
            .await
            .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let admin = ctl.spec("127.0.0.1", SslMode::Disable, None);
    let control = admin.with_user("bucardo", None).with_db("bucardo");
    let cli = BucardoCli {
        program: "bucardo".into(),
        control: control.clone(),
        piddir: dirs.path().to_path_buf(),
        logdir: dirs.path().to_path_buf(),
        workdir: dirs.path().to_path_buf(),
    };
    let pf = Passfile::write(
        &dirs.path().join("pf"),
        &[&admin, &tgt.spec("127.0.0.1", SslMode::Disable, None)],
        false,
    )
    .unwrap();
    // HOME without a writable ~/.pgpass: install prints the password it made up.
    let install = cli
        .invocation(
            &BucardoCmd::Install {
                admin_user: "postgres".into(),
                admin_db: "postgres".into(),
            },
            pf.path(),
        )
        .env("HOME", "/nonexistent/home");
    let out = process::run(&install, Duration::from_secs(120))
        .await
        .unwrap();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        all.contains("Password for user bucardo is: ********\n"),
        "{all}"
    );
    assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all:?}");

    // Give the role a known password so that the control database is usable, then register a
    // database on a server without the role: `add db` creates it and warns its password.
    ctl.cluster
        .psql(
            "postgres",
            "ALTER ROLE bucardo PASSWORD 'ctl-bucardo-pass-1'",
        )
        .unwrap();
    let mut ctl_bucardo = control.clone();
    ctl_bucardo.password = Some(bucardo_bootstrap::engine::secret::Secret::new(
        "ctl-bucardo-pass-1",
    ));
    // A (wrong) password for `bucardo` on the target makes the server name the role in its
    // error, which is what sends `add db` down the path that creates the role.
    let mut tgt_bucardo = tgt
        .spec("127.0.0.1", SslMode::Disable, None)
        .with_user("bucardo", None);
    tgt_bucardo.password = Some(bucardo_bootstrap::engine::secret::Secret::new(
        "not-the-password",
    ));
    let pf = Passfile::write(
        &dirs.path().join("pf2"),
        &[
            &ctl_bucardo,
            &admin,
            &tgt_bucardo,
            &tgt.spec("127.0.0.1", SslMode::Disable, None),
        ],
        false,
    )
    .unwrap();
    if !bucardo_bootstrap::engine::bucardo::control_installed(&ctl_bucardo)
        .await
        .unwrap()
    {
        let out = process::run(
            &cli.invocation(
                &BucardoCmd::Install {
                    admin_user: "postgres".into(),
                    admin_db: "postgres".into(),
                },
                pf.path(),
            ),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
        assert_eq!(out.status, 0, "{out:?}");
    }
    let add = cli.invocation(
        &BucardoCmd::AddDb {
            name: "tgt".into(),
            dbname: "postgres".into(),
            host: "127.0.0.1".into(),
            port: tgt.cluster.port,
            user: "bucardo".into(),
            conn: None,
        },
        pf.path(),
    );
    let out = process::run(&add, Duration::from_secs(120)).await.unwrap();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        all.contains("Created superuser 'bucardo' with password ********"),
        "{all}"
    );
    assert!(!all.contains("with password \""), "{all}");
    // The role exists now, with Bucardo's random password (stored as an md5 hash, which SCRAM
    // cannot use: the command fails after the warning, and this tool never relies on it).
    assert_eq!(
        tgt.cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_roles WHERE rolname = 'bucardo'"
            )
            .unwrap()
            .trim(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_names_through_catalog_copy_and_bucardo() {
    use bucardo_bootstrap::engine::bucardo::{BucardoCli, BucardoCmd};
    use bucardo_bootstrap::engine::copy::{self, Snapshot};
    let c = tokio::task::spawn_blocking(|| OwnCluster::start("quote"))
        .await
        .unwrap();
    let admin = c.spec("127.0.0.1", SslMode::Disable, None);
    let a = admin.connect(Side::Here).await.unwrap();
    a.batch_execute("CREATE DATABASE qsrc").await.unwrap();
    a.batch_execute("CREATE DATABASE qdst").await.unwrap();
    let src = admin.with_db("qsrc");
    let dst = admin.with_db("qdst");

    let mut tables: Vec<TableName> = bucardo_bootstrap::sandbox::data::adversarial_names()
        .into_iter()
        .map(|n| TableName::new("public", n))
        .collect();
    for schema in ["Sales Dept", "we\"ird;schema", "-dash", "ünï"] {
        tables.push(TableName::new(schema, "t"));
    }
    let ddl: String = tables
        .iter()
        .map(|t| {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {} (id int PRIMARY KEY, \"col \"\"x\"\" ;$\" text, \"select\" int);\n",
                quote_ident(&t.schema),
                t.sql()
            )
        })
        .collect();
    let inserts: String = tables
        .iter()
        .map(|t| format!("INSERT INTO {} VALUES (1, 'v''1', 2);\n", t.sql()))
        .collect();
    let s = src.connect(Side::Here).await.unwrap();
    let d = dst.connect(Side::There).await.unwrap();
    s.batch_execute(&ddl).await.unwrap();
    s.batch_execute(&inserts).await.unwrap();
    d.batch_execute(&ddl).await.unwrap();

    // The catalog gives every name back exactly, and finds each by its raw name.
    let all = list_tables(&s, Side::Here, None).await.unwrap();
    let listed: BTreeSet<TableName> = all.iter().map(|t| t.name.clone()).collect();
    assert_eq!(listed, tables.iter().cloned().collect::<BTreeSet<_>>());
    let some: Vec<TableName> = tables.iter().step_by(3).cloned().collect();
    let found = list_tables(&s, Side::Here, Some(&some)).await.unwrap();
    assert_eq!(
        found
            .iter()
            .map(|t| t.name.clone())
            .collect::<BTreeSet<_>>(),
        some.iter().cloned().collect::<BTreeSet<_>>()
    );

    // Eligibility: refused exactly when Bucardo's CLI cannot take the name, with the reason.
    let mut accepted = Vec::new();
    for t in &all {
        match (bucardo_cli_refusal(&t.name), t.eligibility()) {
            (None, Ok(())) => accepted.push(t.clone()),
            (Some(why), Err(e)) => {
                let why = why.strip_prefix(&format!("{}: ", t.name)).unwrap_or(&why);
                assert!(e.contains(why) && e.contains("fix:"), "{}: {e}", t.name);
            }
            (why, e) => panic!("{}: refusal {why:?} but eligibility {e:?}", t.name),
        }
    }
    let accepted_names: BTreeSet<String> = accepted.iter().map(|t| t.name.raw()).collect();
    for n in [
        "public.with space",
        "public. leading and trailing ",
        "public.表格",
        "public.select",
        "public.UPPER",
        "Sales Dept.t",
        "public.trailing-",
    ] {
        assert!(
            accepted_names.contains(n),
            "{n} is accepted: {accepted_names:?}"
        );
    }
    for n in [
        "public.semi;colon",
        "public.we\"ird",
        "public.-leading",
        "-dash.t",
        "public.a.b",
        "public.tbl²",
    ] {
        assert!(!accepted_names.contains(n), "{n} is refused");
    }

    // The data copy and the checksum quote every table and column name correctly.
    let snapshot = Snapshot::export(&src).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let cancel = tokio_util::sync::CancellationToken::new();
    let copied = copy::copy_tables(
        &src,
        &dst,
        copy::Source::Shared(&snapshot),
        &all,
        &[],
        2,
        &bucardo_bootstrap::engine::governor::Pace::unlimited(),
        &tx,
        &cancel,
    )
    .await
    .unwrap();
    snapshot.release().await;
    drop(tx);
    drain.await.unwrap();
    assert_eq!(copied.len(), all.len());
    for t in &all {
        let sql = verify::checksum_sql(t);
        let a: String = s.query_one(sql.as_str(), &[]).await.unwrap().get(0);
        let b: String = d.query_one(sql.as_str(), &[]).await.unwrap().get(0);
        assert!(a.starts_with("1:") && a == b, "{}: {a} vs {b}", t.name);
    }

    // Bucardo takes every accepted name, one argv word each, through add table and add sync
    // (which creates its triggers and delta tables for them on both databases). Its CLI decodes
    // argv with the locale's codeset: non-ASCII names need a UTF-8 locale.
    let dirs = tempfile::tempdir().unwrap();
    let verifier = postgres_protocol::password::scram_sha_256(b"quote-bucardo-pass");
    a.batch_execute(&format!(
        "CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD {}",
        bucardo_bootstrap::engine::ident::quote_literal(&verifier)
    ))
    .await
    .unwrap();
    let mut control = admin.with_user("bucardo", None).with_db("bucardo");
    control.password = Some(bucardo_bootstrap::engine::secret::Secret::new(
        "quote-bucardo-pass",
    ));
    let pf = Passfile::write(&dirs.path().join("pf"), &[&admin, &control], false).unwrap();
    let cli = BucardoCli {
        program: "bucardo".into(),
        control: control.clone(),
        piddir: dirs.path().to_path_buf(),
        logdir: dirs.path().to_path_buf(),
        workdir: dirs.path().to_path_buf(),
    };
    let bucardo = |cmd: BucardoCmd| {
        let inv = cli.invocation(&cmd, pf.path()).env("LC_ALL", "C.UTF-8");
        async move {
            let out = process::run(&inv, Duration::from_secs(120)).await.unwrap();
            assert_eq!(out.status, 0, "{:?}: {out:?}", inv.argv);
            out
        }
    };
    bucardo(BucardoCmd::Install {
        admin_user: "postgres".into(),
        admin_db: "postgres".into(),
    })
    .await;
    for (name, db) in [("qsrc", "qsrc"), ("qdst", "qdst")] {
        bucardo(BucardoCmd::AddDb {
            name: name.into(),
            dbname: db.into(),
            host: "127.0.0.1".into(),
            port: c.cluster.port,
            user: "bucardo".into(),
            conn: None,
        })
        .await;
    }
    let ctl = control.connect(Side::Control).await.unwrap();
    ctl.execute(
        "UPDATE bucardo.db SET dbpass = $1",
        &[&"quote-bucardo-pass"],
    )
    .await
    .unwrap();
    let names: Vec<TableName> = accepted.iter().map(|t| t.name.clone()).collect();
    let out = bucardo(BucardoCmd::AddTables {
        tables: names.clone(),
        relgroup: "qrels".into(),
        db: "qsrc".into(),
    })
    .await;
    assert!(!out.stdout.contains("Did not find matches"), "{out:?}");
    let goats: BTreeSet<String> = ctl
        .query(
            "SELECT schemaname || '.' || tablename FROM bucardo.goat WHERE db = 'qsrc'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(goats, accepted_names);
    bucardo(BucardoCmd::AddDbgroup {
        name: "qdbs".into(),
        sources: vec!["qsrc".into(), "qdst".into()],
    })
    .await;
    bucardo(BucardoCmd::AddSync {
        name: "qsync".into(),
        relgroup: "qrels".into(),
        dbgroup: "qdbs".into(),
    })
    .await;
    let sqls: Vec<String> = names.iter().map(TableName::sql).collect();
    for (side, client) in [("qsrc", &s), ("qdst", &d)] {
        let n: i64 = client
            .query_one(
                "SELECT count(DISTINCT tgrelid) FROM pg_trigger WHERE tgname = 'bucardo_delta' AND tgrelid = ANY(SELECT unnest($1::text[])::regclass)",
                &[&sqls],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            n as usize,
            names.len(),
            "{side}: Bucardo's triggers on every accepted table"
        );
    }
}
