//! Plan files: the settings of a reviewed bootstrap saved as TOML (never a password), so that
//! `run --config FILE` replays exactly what was reviewed. Passwords are resolved again from the
//! environment and `.pgpass` when the file is loaded.

use crate::cli::{ConnArgs, Draft};
use crate::engine::conn::ProcessEnv;
use crate::engine::settings::Settings;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct PlanFile {
    format: u32,
    settings: Draft,
}

/// The TOML text of a plan file for these settings' draft.
pub fn save_draft(d: &Draft) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(&PlanFile {
        format: FORMAT_VERSION,
        settings: d.clone(),
    })?)
}

/// The draft behind `s` (as the CLI would have written it) saved as TOML.
pub fn save(s: &Settings) -> anyhow::Result<String> {
    save_draft(&draft_of(s))
}

/// Parses a plan file's text into a draft (passwords not included).
pub fn parse(text: &str) -> anyhow::Result<Draft> {
    let f: PlanFile = toml::from_str(text).context("not a bucardo-bootstrap plan file")?;
    if f.format != FORMAT_VERSION {
        anyhow::bail!(
            "plan file format {} is not supported (this build reads {FORMAT_VERSION})",
            f.format
        );
    }
    Ok(f.settings)
}

/// Loads a plan file and resolves passwords from the environment and `.pgpass`.
pub fn load(path: &Path, _overrides: &ConnArgs) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut d = parse(&text).with_context(|| format!("{}", path.display()))?;
    let env = Draft::from_args(&ConnArgs::default(), &ProcessEnv);
    d.pg_password = env.pg_password;
    d.bucardo_password = env.bucardo_password;
    d.passfile = env.passfile;
    d.build().map_err(anyhow::Error::msg)
}

fn draft_of(s: &Settings) -> Draft {
    use crate::engine::settings::TableSelection;
    Draft {
        here: s.here.display_uri(),
        there: s.there.display_uri(),
        bucardo_db: s.bucardo.control.display_uri(),
        bucardo_user: s.bucardo.user.clone(),
        bucardo_piddir: s.bucardo.piddir.display().to_string(),
        bucardo_logdir: s.bucardo.logdir.display().to_string(),
        log_dir: s.log_dir.display().to_string(),
        tables: match &s.tables {
            TableSelection::All => "all".into(),
            TableSelection::List(l) => l.iter().map(|t| t.sql()).collect::<Vec<_>>().join(","),
        },
        leave_out: s
            .leave_out
            .iter()
            .map(|t| t.sql())
            .collect::<Vec<_>>()
            .join(","),
        here_name: s.names.here_db.clone(),
        there_name: s.names.there_db.clone(),
        sync: s.names.sync.clone(),
        relgroup: s.names.relgroup.clone(),
        dbgroup: s.names.dbgroup.clone(),
        copy_roles: s.copy_roles,
        sequences: s.sequences,
        jobs: s.jobs,
        kick_timeout_s: s.kick_timeout_s,
        convert_generated: s.convert_generated,
        max_load: if s.governor.enabled {
            s.governor.max_load.to_string()
        } else {
            "off".into()
        },
        critical_load: s.governor.critical_load.to_string(),
        pg_password: None,
        bucardo_password: None,
        passfile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_secrets() {
        let env = [
            ("HOME", "/nonexistent"),
            ("PGPASSWORD", "never-in-a-file-1"),
            ("PGHOST2", "other"),
        ];
        let mut d = Draft::from_args(&ConnArgs::default(), &env);
        d.tables = r#"public.foo,"Sales"."Order Items""#.into();
        d.convert_generated = true;
        let s = d.build().unwrap();
        let text = save(&s).unwrap();
        assert!(!text.contains("never-in-a-file-1"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.tables, r#""Sales"."Order Items","public"."foo""#);
        assert_eq!(back.here, s.here.display_uri());
        assert!(back.convert_generated && s.convert_generated);
        let old_file = text.replace("convert_generated = true\n", "");
        assert!(!parse(&old_file).unwrap().convert_generated, "{old_file}");
        assert!(parse("format = 99\n[settings]\n").is_err());
        assert!(parse("garbage").is_err());
    }
}
