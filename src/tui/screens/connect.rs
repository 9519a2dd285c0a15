//! The Connect screen: the wizard's [`Draft`] as an editable form (the three connection URIs,
//! Bucardo's role, directories and names, and the two passwords, which are masked and never
//! shown), the "test connection" results, and the validation error from [`Draft::build`].

use crate::cli::{Draft, DraftError, DraftField};
use crate::engine::conn::{pgpass_lookup, ConnDefaults, ConnSpec, Side};
use crate::engine::secret::{redact, Secret};
use crate::engine::settings::NameKind;
use crate::tui::theme;
use crate::tui::widgets::{fit, spinner, truncate, wrap, LineEdit, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

/// One row of the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Here,
    There,
    PgPassword,
    Control,
    BucardoUser,
    BucardoPassword,
    Piddir,
    Logdir,
    HereName,
    ThereName,
    Relgroup,
    Dbgroup,
    Sync,
    Continue,
}

impl Field {
    pub const ALL: [Field; 14] = [
        Field::Here,
        Field::There,
        Field::PgPassword,
        Field::Control,
        Field::BucardoUser,
        Field::BucardoPassword,
        Field::Piddir,
        Field::Logdir,
        Field::HereName,
        Field::ThereName,
        Field::Relgroup,
        Field::Dbgroup,
        Field::Sync,
        Field::Continue,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Field::Here => "HERE (live)",
            Field::There => "THERE (new)",
            Field::PgPassword => "Superuser password",
            Field::Control => "Bucardo control db",
            Field::BucardoUser => "Bucardo role",
            Field::BucardoPassword => "Bucardo password",
            Field::Piddir => "Bucardo piddir",
            Field::Logdir => "Bucardo logdir",
            Field::HereName => "Name for HERE",
            Field::ThereName => "Name for THERE",
            Field::Relgroup => "Relgroup",
            Field::Dbgroup => "Dbgroup",
            Field::Sync => "Sync",
            Field::Continue => "Continue",
        }
    }

    pub fn is_password(self) -> bool {
        matches!(self, Field::PgPassword | Field::BucardoPassword)
    }

    /// The connections whose test result an edit of this field makes stale.
    pub fn sides(self) -> &'static [Side] {
        match self {
            Field::Here => &[Side::Here],
            Field::There => &[Side::There],
            Field::PgPassword => &[Side::Here, Side::There],
            Field::Control | Field::BucardoUser | Field::BucardoPassword => &[Side::Control],
            _ => &[],
        }
    }

    /// The field a [`DraftError`] is about; `None` for settings this screen has no field for.
    pub fn of_error(e: &DraftError) -> Option<Field> {
        Some(match e.field {
            DraftField::Here => Field::Here,
            DraftField::There => Field::There,
            DraftField::Control => Field::Control,
            DraftField::BucardoUser => Field::BucardoUser,
            DraftField::Name(NameKind::HereDb) => Field::HereName,
            DraftField::Name(NameKind::ThereDb) => Field::ThereName,
            DraftField::Name(NameKind::Relgroup) => Field::Relgroup,
            DraftField::Name(NameKind::Dbgroup) => Field::Dbgroup,
            DraftField::Name(NameKind::Sync) => Field::Sync,
            DraftField::Tables | DraftField::Jobs | DraftField::Governor => return None,
        })
    }
}

/// Where a password comes from; shown instead of the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PwSource {
    Env(&'static str),
    Typed,
    Passfile,
    InUri,
    Missing,
}

/// The result of "test connection" for one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestState {
    NotTested,
    Testing {
        seq: u64,
    },
    Ok(String),
    /// The server answers, but not as the run will connect yet (THERE's database or Bucardo's
    /// role does not exist until the plan creates them).
    Warn(String),
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct ConnectState {
    pub ui: Ui,
    /// The wizard's settings as typed. Later screens write the table selection into it.
    pub draft: Draft,
    pub focus: usize,
    pub editing: Option<LineEdit>,
    pub pg_source: PwSource,
    pub bucardo_source: PwSource,
    pub tests: [(Side, TestState); 3],
    pub next_seq: u64,
    /// The message of the last failed [`Draft::build`], and the field it is about.
    pub error: Option<(Option<Field>, String)>,
}

impl ConnectState {
    pub fn new(draft: Draft, ui: Ui) -> ConnectState {
        let pg_source = if draft.pg_password.is_some() {
            PwSource::Env("PGPASSWORD")
        } else {
            PwSource::Missing
        };
        let bucardo_source = if draft.bucardo_password.is_some() {
            PwSource::Env("BUCARDOPASS")
        } else {
            PwSource::Missing
        };
        let mut s = ConnectState {
            ui,
            draft,
            focus: 0,
            editing: None,
            pg_source,
            bucardo_source,
            tests: [
                (Side::Here, TestState::NotTested),
                (Side::There, TestState::NotTested),
                (Side::Control, TestState::NotTested),
            ],
            next_seq: 1,
            error: None,
        };
        s.refresh_sources();
        s
    }

    pub fn field(&self) -> Field {
        Field::ALL[self.focus.min(Field::ALL.len() - 1)]
    }

    pub fn value(&self, f: Field) -> String {
        let d = &self.draft;
        match f {
            Field::Here => d.here.clone(),
            Field::There => d.there.clone(),
            Field::Control => d.bucardo_db.clone(),
            Field::BucardoUser => d.bucardo_user.clone(),
            Field::Piddir => d.bucardo_piddir.clone(),
            Field::Logdir => d.bucardo_logdir.clone(),
            Field::HereName => d.here_name.clone(),
            Field::ThereName => d.there_name.clone(),
            Field::Relgroup => d.relgroup.clone(),
            Field::Dbgroup => d.dbgroup.clone(),
            Field::Sync => d.sync.clone(),
            Field::PgPassword | Field::BucardoPassword | Field::Continue => String::new(),
        }
    }

    /// Stores an edited value. Typed passwords become [`Secret`]s; an empty one clears it.
    pub fn set_value(&mut self, f: Field, v: String) {
        let d = &mut self.draft;
        match f {
            Field::Here => d.set_here(v),
            Field::There => d.there = v,
            Field::Control => d.bucardo_db = v,
            Field::BucardoUser => d.bucardo_user = v,
            Field::Piddir => d.bucardo_piddir = v,
            Field::Logdir => d.bucardo_logdir = v,
            Field::HereName => d.here_name = v,
            Field::ThereName => d.there_name = v,
            Field::Relgroup => d.relgroup = v,
            Field::Dbgroup => d.dbgroup = v,
            Field::Sync => d.sync = v,
            Field::PgPassword => {
                d.pg_password = (!v.is_empty()).then(|| Secret::new(v));
                self.pg_source = if d.pg_password.is_some() {
                    PwSource::Typed
                } else {
                    PwSource::Missing
                };
            }
            Field::BucardoPassword => {
                d.bucardo_password = (!v.is_empty()).then(|| Secret::new(v));
                self.bucardo_source = if d.bucardo_password.is_some() {
                    PwSource::Typed
                } else {
                    PwSource::Missing
                };
            }
            Field::Continue => {}
        }
        for side in f.sides() {
            self.set_test(*side, TestState::NotTested);
        }
        self.error = None;
        self.refresh_sources();
    }

    /// Re-derives "from the URI" and "from ~/.pgpass" for passwords nobody typed or exported.
    pub fn refresh_sources(&mut self) {
        let pf = self.draft.passfile.clone();
        let found = |uri: &str| -> PwSource {
            match ConnSpec::parse_uri(uri.trim(), &ConnDefaults::default()) {
                Ok(spec) if spec.password.is_some() => PwSource::InUri,
                Ok(spec) => match &pf {
                    Some(file)
                        if pgpass_lookup(file, &spec.host, spec.port, &spec.dbname, &spec.user)
                            .is_some() =>
                    {
                        PwSource::Passfile
                    }
                    _ => PwSource::Missing,
                },
                Err(_) => PwSource::Missing,
            }
        };
        if matches!(
            self.pg_source,
            PwSource::Missing | PwSource::Passfile | PwSource::InUri
        ) {
            self.pg_source = found(&self.draft.here);
        }
        if matches!(
            self.bucardo_source,
            PwSource::Missing | PwSource::Passfile | PwSource::InUri
        ) {
            self.bucardo_source = found(&self.draft.bucardo_db);
        }
    }

    pub fn test(&self, side: Side) -> &TestState {
        self.tests
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, t)| t)
            .unwrap_or(&TestState::NotTested)
    }

    pub fn set_test(&mut self, side: Side, t: TestState) {
        if let Some(slot) = self.tests.iter_mut().find(|(s, _)| *s == side) {
            slot.1 = t;
        }
    }

    pub fn testing(&self) -> bool {
        self.tests
            .iter()
            .any(|(_, t)| matches!(t, TestState::Testing { .. }))
    }

    /// The connection to test for `side`, with its password resolved as a run would.
    pub fn spec_for(&self, side: Side) -> Result<ConnSpec, String> {
        let d = &self.draft;
        let (uri, pw) = match side {
            Side::Here => (&d.here, &d.pg_password),
            Side::There => (&d.there, &d.pg_password),
            Side::Control => (&d.bucardo_db, &d.bucardo_password),
        };
        let mut spec = ConnSpec::parse_uri(uri.trim(), &ConnDefaults::default())
            .map_err(|e| format!("{side}: {e}"))?;
        spec.resolve_password(pw.as_ref().map(|s| s.expose()), d.passfile.as_deref());
        Ok(spec)
    }

    /// What to try when `spec_for(side)` cannot connect, to tell "not created yet" from "wrong":
    /// THERE's server through its `postgres` database, and the control server as HERE's
    /// superuser, the way the plan's first steps reach them.
    pub fn fallback_for(&self, side: Side) -> Option<ConnSpec> {
        match side {
            Side::Here => None,
            Side::There => self
                .spec_for(Side::There)
                .ok()
                .map(|s| s.with_db("postgres")),
            Side::Control => {
                let here = self.spec_for(Side::Here).ok()?;
                let control =
                    ConnSpec::parse_uri(self.draft.bucardo_db.trim(), &ConnDefaults::default())
                        .ok()?;
                let mut admin = control.with_user(&here.user, None).with_db("postgres");
                admin.resolve_password(
                    self.draft.pg_password.as_ref().map(|s| s.expose()),
                    self.draft.passfile.as_deref(),
                );
                Some(admin)
            }
        }
    }

    fn password_text(&self, source: PwSource, env: &str) -> String {
        match source {
            PwSource::Env(var) => format!("●●●●●● (from {var})"),
            PwSource::Typed => "●●●●●● (typed)".into(),
            PwSource::Passfile => "●●●●●● (from ~/.pgpass)".into(),
            PwSource::InUri => "●●●●●● (in the URI)".into(),
            PwSource::Missing => format!("not set: Enter to type it, or export {env}"),
        }
    }

    fn shown(&self, f: Field) -> String {
        match f {
            Field::PgPassword => self.password_text(self.pg_source, "PGPASSWORD"),
            Field::BucardoPassword => self.password_text(self.bucardo_source, "BUCARDOPASS"),
            Field::Continue => "→ preflight checks (n)".into(),
            other => redact(&self.value(other)),
        }
    }

    /// At most `per_side` lines per connection; a cut message ends with `…`.
    fn test_lines(&self, width: usize, per_side: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let mut out = Vec::new();
        for (side, state) in &self.tests {
            let label = fit(&side.to_string(), 19);
            let (sym, style, text) = match state {
                TestState::NotTested => (
                    theme::PENDING.to_string(),
                    t.dim(),
                    "not tested: press t".to_string(),
                ),
                TestState::Testing { .. } => (
                    spinner(self.ui.now).to_string(),
                    t.accent(),
                    "connecting…".to_string(),
                ),
                TestState::Ok(v) => (theme::OK.to_string(), t.ok(), v.clone()),
                TestState::Warn(v) => (theme::WARN.to_string(), t.warn(), v.clone()),
                TestState::Failed(e) => (theme::FAIL.to_string(), t.fail(), e.clone()),
            };
            let room = width.saturating_sub(22);
            let mut wrapped = wrap(&text, room);
            if wrapped.len() > per_side {
                wrapped.truncate(per_side);
                if let Some(last) = wrapped.last_mut() {
                    let kept: String = last.chars().take(room.saturating_sub(1)).collect();
                    *last = format!("{}…", kept.trim_end());
                }
            }
            for (i, piece) in wrapped.iter().enumerate() {
                let head = if i == 0 {
                    vec![
                        Span::raw(label.clone()),
                        Span::styled(format!("{sym} "), style),
                    ]
                } else {
                    vec![Span::raw(" ".repeat(21))]
                };
                let mut spans = head;
                spans.push(Span::styled(
                    piece.trim_start().to_string(),
                    if i == 0 { style } else { t.dim() },
                ));
                out.push(Line::from(spans));
            }
        }
        out
    }
}

impl Widget for &ConnectState {
    /// ```text
    /// ┌ Connections ──────────────────────────┐
    /// │▶ HERE (live)         postgres://…     │  one row per field, scrolled to the focus
    /// └───────────────────────────────────────┘
    /// ┌ Connection test (t) ──────────────────┐
    /// │ HERE   ✓ PostgreSQL 15.4, superuser    │
    /// └───────────────────────────────────────┘
    /// ┌ Cannot continue ──────────────────────┐  only after a failed validation
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let inner_w = area.width.saturating_sub(2) as usize;
        let per_side = if area.height < 30 { 3 } else { 6 };
        let tests = self.test_lines(inner_w, per_side);
        let err_lines: Vec<String> = self
            .error
            .as_ref()
            .map(|(_, e)| wrap(e, inner_w))
            .unwrap_or_default();
        let err_h = if err_lines.is_empty() {
            0
        } else {
            err_lines.len().min(4) as u16 + 2
        };
        let test_h = tests.len() as u16 + 2;
        let form_h = (Field::ALL.len() as u16 + 2)
            .min(area.height.saturating_sub(test_h + err_h))
            .max(5);
        let [form_area, test_area, err_area, _] = Layout::vertical([
            Constraint::Length(form_h),
            Constraint::Length(test_h),
            Constraint::Length(err_h),
            Constraint::Min(0),
        ])
        .areas(area);

        let rows = form_area.height.saturating_sub(2) as usize;
        let first = (self.focus + 1).saturating_sub(rows);
        let value_w = inner_w.saturating_sub(22);
        let mut lines = Vec::new();
        for (i, f) in Field::ALL.iter().enumerate().skip(first).take(rows) {
            let focused = i == self.focus;
            let marker = if focused { "▶ " } else { "  " };
            let bad = matches!(&self.error, Some((Some(ef), _)) if ef == f);
            let label_style = if bad {
                t.fail()
            } else if focused {
                t.bold()
            } else {
                ratatui::style::Style::new()
            };
            let mut spans = vec![
                Span::styled(marker.to_string(), t.accent()),
                Span::styled(fit(f.label(), 20), label_style),
            ];
            match (&self.editing, focused) {
                (Some(edit), true) => {
                    let shown = if f.is_password() {
                        "●".repeat(edit.text.chars().count())
                    } else {
                        redact(&edit.text)
                    };
                    spans.extend(edit.line(&shown, value_w, t).spans);
                }
                _ => {
                    let text = truncate(&self.shown(*f), value_w);
                    let style = if *f == Field::Continue {
                        t.accent()
                    } else if f.is_password() {
                        t.dim()
                    } else {
                        ratatui::style::Style::new()
                    };
                    let style = if focused {
                        style.patch(t.selected())
                    } else {
                        style
                    };
                    spans.push(Span::styled(text, style));
                    if bad {
                        spans.push(Span::styled(format!(" {}", theme::FAIL), t.fail()));
                    }
                }
            }
            lines.push(Line::from(spans));
        }
        let title = format!(" Connections ({}/{}) ", self.focus + 1, Field::ALL.len());
        Paragraph::new(lines)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, t.bold())),
            )
            .render(form_area, buf);

        Paragraph::new(tests)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Connection test (t) "),
            )
            .render(test_area, buf);

        if err_h > 0 {
            let lines: Vec<Line> = err_lines
                .into_iter()
                .take(4)
                .map(|l| Line::styled(l, t.fail()))
                .collect();
            Paragraph::new(lines)
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(Span::styled(" Cannot continue ", t.fail())),
                )
                .render(err_area, buf);
        }
    }
}
