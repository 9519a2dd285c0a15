//! The wizard's state and its one pure transition function, `update(&mut App, Msg) -> Vec<Effect>`
//! (The Elm Architecture): keys, engine results and runner events come in as [`Msg`]s, change the
//! state, and ask for IO as [`Effect`]s, which `effects.rs` performs. Nothing here awaits, spawns
//! or touches the terminal, so the state tests drive it with plain messages.
//!
//! Screens own their state and rendering (`screens/`); this module owns the moves between them,
//! the global keys (`?`, `q`, Ctrl-C) and the confirm prompts; `chrome.rs` draws the frame around
//! a screen. Nothing here renders.

use crate::cli::Draft;
use crate::engine::catalog::TableInfo;
use crate::engine::cleanup::CleanupPlan;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::event::{ConfirmMode, GateReply, RunEvent};
use crate::engine::governor::{Mode, Steer};
use crate::engine::plan::Plan;
use crate::engine::preflight::{Finding, Severity};
use crate::engine::runner::RunResult;
use crate::engine::settings::Settings;
use crate::session::launch::Earlier;
use crate::session::text;
use crate::tui::screens::connect::{ConnectState, Field, TestState};
use crate::tui::screens::done::{DoneState, Health};
use crate::tui::screens::preflight::PreflightState;
use crate::tui::screens::resume::{ResumeState, Undo};
use crate::tui::screens::review::ReviewState;
use crate::tui::screens::run::RunView;
use crate::tui::screens::tables::TablesState;
use crate::tui::theme::Theme;
use crate::tui::widgets::{EditOutcome, LineEdit, Ui, SPINNER_STEP};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Connect,
    Preflight,
    /// In place of Preflight, Tables and Review when an earlier run started this bootstrap.
    Resume,
    Tables,
    Review,
    Run,
    Done,
}

impl Screen {
    pub const ALL: [Screen; 6] = [
        Screen::Connect,
        Screen::Preflight,
        Screen::Tables,
        Screen::Review,
        Screen::Run,
        Screen::Done,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Connect => "Connect",
            Screen::Preflight => "Preflight",
            Screen::Resume => "Resume",
            Screen::Tables => "Tables",
            Screen::Review => "Review",
            Screen::Run => "Run",
            Screen::Done => "Done",
        }
    }
}

/// A yes/no question over the current screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    AbortRun,
    QuitDuringRun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusLevel {
    Info,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveKind {
    Script,
    PlanFile,
}

/// Everything that can change the state.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    /// Time since the wizard started (the injected clock).
    Tick(Duration),
    ConnTested {
        side: Side,
        seq: u64,
        result: TestState,
    },
    /// Whether an earlier run started the bootstrap these settings describe.
    EarlierFound(u64, Result<Option<Box<Earlier>>, String>),
    /// The resumed plan (with the earlier run's steps marked done).
    ResumePlanned(u64, Result<Box<Plan>, String>),
    /// The checks for resuming.
    ResumeChecked(u64, Vec<Finding>),
    /// What cleanup would remove, and its text.
    CleanupPlanned(Result<(Box<CleanupPlan>, String), String>),
    CleanedUp(Result<(), String>),
    TablesLoaded(Result<Vec<TableInfo>, String>),
    PreflightDone(Vec<Finding>),
    PlanBuilt(Result<Box<Plan>, String>),
    Saved {
        what: SaveKind,
        result: Result<PathBuf, String>,
    },
    Run(RunEvent),
    /// The runner returned; every `Run` event has been delivered before this.
    RunEnded(RunResult),
    Health(Result<Health, String>),
}

impl Msg {
    /// Terminal events the wizard cares about: key presses (not repeats or releases) and resizes.
    pub fn from_term(ev: &Event) -> Option<Msg> {
        match ev {
            Event::Key(k) if k.kind == KeyEventKind::Press => Some(Msg::Key(*k)),
            Event::Resize(..) => Some(Msg::Resize),
            _ => None,
        }
    }
}

/// IO the state asks for; `effects.rs` performs it and reports back with a [`Msg`].
#[derive(Debug)]
pub enum Effect {
    /// `fallback` is tried when `spec` fails, to tell "not created yet" from "wrong".
    TestConnection {
        side: Side,
        spec: Box<ConnSpec>,
        fallback: Option<Box<ConnSpec>>,
        seq: u64,
    },
    /// Each lookup carries [`App::lookup`]; replies to an older one are dropped.
    FindEarlier(Box<Settings>, u64),
    /// Builds the resumed plan, then runs the checks for resuming.
    PrepareResume(Box<Settings>, u64),
    ResumeChecks(Box<Settings>, u64),
    PlanCleanup(Box<Settings>),
    RunCleanup {
        settings: Box<Settings>,
        plan: Box<CleanupPlan>,
    },
    LoadTables(Box<Settings>),
    RunPreflight {
        settings: Box<Settings>,
        tables: Option<Vec<TableInfo>>,
    },
    BuildPlan(Box<Settings>),
    SaveScript {
        path: PathBuf,
        contents: String,
    },
    SavePlanFile {
        path: PathBuf,
        contents: String,
    },
    StartRun {
        plan: Box<Plan>,
        settings: Box<Settings>,
        mode: ConfirmMode,
    },
    GateReply(GateReply),
    /// The operator steers the governor (pause, resume, slower, faster).
    Steer(Steer),
    Abort,
    RefreshHealth(Box<Settings>),
    Quit,
}

pub struct App {
    pub screen: Screen,
    pub theme: Theme,
    pub now: Duration,
    /// The settings the later screens work from, built from the draft when leaving a screen.
    pub settings: Option<Settings>,
    pub connect: ConnectState,
    pub preflight: PreflightState,
    pub tables: TablesState,
    pub review: ReviewState,
    pub resume: ResumeState,
    /// The lookup the wizard waits for (an earlier run, the resumed plan, the resume checks);
    /// a reply to an older one, from before Esc or another Enter, is dropped.
    pub lookup: u64,
    pub run: Option<RunView>,
    pub done: DoneState,
    pub help: bool,
    pub prompt: Option<Prompt>,
    pub status: Option<(StatusLevel, String)>,
    pub log_path: Option<PathBuf>,
    /// Quit as soon as the runner has stopped (after "quit during a run").
    pub quit_after_run: bool,
    pub quit: bool,
}

impl App {
    pub fn new(draft: Draft, theme: Theme, log_path: Option<PathBuf>) -> App {
        let ui = Ui {
            theme,
            now: Duration::ZERO,
        };
        App {
            screen: Screen::Connect,
            theme,
            now: Duration::ZERO,
            settings: None,
            connect: ConnectState::new(draft, ui),
            preflight: PreflightState {
                ui,
                ..Default::default()
            },
            tables: TablesState {
                ui,
                ..Default::default()
            },
            review: ReviewState {
                ui,
                ..Default::default()
            },
            resume: ResumeState {
                ui,
                ..Default::default()
            },
            lookup: 0,
            run: None,
            done: DoneState {
                ui,
                ..Default::default()
            },
            help: false,
            prompt: None,
            status: None,
            log_path,
            quit_after_run: false,
            quit: false,
        }
    }

    pub fn draft(&self) -> &Draft {
        &self.connect.draft
    }

    pub fn ui(&self) -> Ui {
        Ui {
            theme: self.theme,
            now: self.now,
        }
    }

    /// Sets the injected clock and hands it to every screen.
    pub fn set_now(&mut self, now: Duration) {
        self.now = now;
        let ui = self.ui();
        self.connect.ui = ui;
        self.preflight.ui = ui;
        self.tables.ui = ui;
        self.review.ui = ui;
        self.resume.ui = ui;
        self.resume.checks.ui = ui;
        if let Some(r) = self.run.as_mut() {
            r.ui = ui;
        }
        self.done.ui = ui;
    }

    pub fn run_active(&self) -> bool {
        self.run.as_ref().is_some_and(RunView::running)
    }

    /// 0: the bootstrap finished (or nothing was run); 1: it failed; 130: it was aborted (or
    /// the wizard quit while it ran).
    pub fn exit_code(&self) -> u8 {
        let Some(view) = &self.run else { return 0 };
        view.run.end().map_or(130, |end| end.exit_code())
    }

    /// Changes whenever something animated on screen needs a redraw: spinners step every
    /// [`SPINNER_STEP`], running durations and "checked N s ago" every second.
    pub fn animation_frame(&self) -> Option<u128> {
        let spinning = match self.screen {
            Screen::Connect => self.connect.testing(),
            Screen::Preflight => self.preflight.loading,
            Screen::Resume => {
                self.resume.plan.is_none()
                    || self.resume.checks.loading
                    || matches!(self.resume.undo, Undo::Planning | Undo::Running)
            }
            Screen::Tables => self.tables.loading,
            Screen::Review => self.review.loading,
            Screen::Run => self.run_active(),
            Screen::Done => self.done.watch && self.done.health.is_none(),
        };
        if spinning {
            Some(self.now.as_millis() / SPINNER_STEP.as_millis())
        } else if self.screen == Screen::Done && self.done.watch {
            Some(u128::from(self.now.as_secs()))
        } else {
            None
        }
    }

    fn set_status(&mut self, level: StatusLevel, text: impl Into<String>) {
        self.status = Some((level, text.into()));
    }
}

/// The transition function. Pure apart from the clock it is handed.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(k) => on_key(app, k),
        Msg::Resize => vec![],
        Msg::Tick(now) => {
            app.set_now(now);
            if app.screen == Screen::Done && app.done.health_due(now) {
                request_health(app)
            } else {
                vec![]
            }
        }
        Msg::ConnTested { side, seq, result } => {
            if matches!(app.connect.test(side), TestState::Testing { seq: s } if *s == seq) {
                app.connect.set_test(side, result);
            }
            vec![]
        }
        Msg::EarlierFound(seq, _) if seq != app.lookup || app.screen != Screen::Preflight => {
            vec![]
        }
        Msg::ResumePlanned(seq, _) | Msg::ResumeChecked(seq, _)
            if seq != app.lookup || app.screen != Screen::Resume =>
        {
            vec![]
        }
        Msg::EarlierFound(_, found) => match found {
            Ok(Some(earlier)) => open_resume(app, *earlier),
            Ok(None) => match app.settings.clone() {
                Some(s) => start_checks(app, s),
                None => vec![],
            },
            Err(e) => {
                tracing::warn!("looking for an earlier run: {e}");
                match app.settings.clone() {
                    Some(s) => start_checks(app, s),
                    None => vec![],
                }
            }
        },
        Msg::ResumePlanned(_, result) => {
            match result {
                Ok(plan) => {
                    if let Some(e) = &app.resume.earlier {
                        app.resume.summary = text::resume_summary(&plan, &e.journal);
                    }
                    app.resume.plan = Some(*plan);
                }
                Err(e) => {
                    app.resume.error = Some(e);
                    app.resume.checks.loading = false;
                }
            }
            vec![]
        }
        Msg::ResumeChecked(_, findings) => {
            app.resume.checks.loading = false;
            app.resume.checks.findings = findings;
            app.resume.checks.scroll = 0;
            vec![]
        }
        Msg::CleanupPlanned(result) => {
            app.resume.undo = match result {
                Ok((plan, text)) => Undo::Review(plan, text),
                Err(e) => Undo::Failed(e),
            };
            app.resume.checks.scroll = 0;
            vec![]
        }
        Msg::CleanedUp(result) => {
            app.resume.undo = match result {
                Ok(()) => Undo::Done,
                Err(e) => Undo::Failed(e),
            };
            vec![]
        }
        Msg::TablesLoaded(result) => {
            let loaded = result.is_ok();
            match result {
                Ok(list) => {
                    let d = &app.connect.draft;
                    let (wanted, out) = (d.tables.clone(), d.leave_out.clone());
                    app.tables.set_tables(list, &wanted, &out);
                }
                Err(e) => {
                    app.tables.loading = false;
                    app.tables.error = Some(e);
                }
            }
            match (&app.settings, app.preflight.loading) {
                (Some(s), true) => {
                    let tables =
                        loaded.then(|| app.tables.selection().into_iter().cloned().collect());
                    vec![Effect::RunPreflight {
                        settings: Box::new(s.clone()),
                        tables,
                    }]
                }
                _ => vec![],
            }
        }
        Msg::PreflightDone(findings) => {
            app.preflight.loading = false;
            app.preflight.findings = findings;
            app.preflight.scroll = 0;
            vec![]
        }
        Msg::PlanBuilt(result) => {
            match result {
                Ok(plan) => app.review.set_plan(*plan),
                Err(e) => {
                    app.review.loading = false;
                    app.review.error = Some(e);
                }
            }
            vec![]
        }
        Msg::Saved { what, result } => {
            let name = match what {
                SaveKind::Script => "script",
                SaveKind::PlanFile => "plan file",
            };
            match result {
                Ok(path) => {
                    let line = match what {
                        SaveKind::Script => format!("script saved (0600): {}", path.display()),
                        SaveKind::PlanFile => format!(
                            "plan file saved: {} (replay: bucardo-bootstrap run --config FILE)",
                            path.display()
                        ),
                    };
                    app.review.saved.push(line);
                }
                Err(e) => {
                    app.set_status(StatusLevel::Error, format!("cannot save the {name}: {e}"))
                }
            }
            vec![]
        }
        Msg::Run(ev) => {
            let finished = matches!(ev, RunEvent::Finished { ok: true, .. });
            let Some(view) = app.run.as_mut() else {
                return vec![];
            };
            view.apply(ev);
            if finished && !app.quit_after_run && app.screen == Screen::Run {
                go_done(app)
            } else {
                vec![]
            }
        }
        Msg::RunEnded(result) => {
            if let Some(view) = app.run.as_mut() {
                view.run.result = Some(result);
            }
            if app.quit_after_run {
                app.quit = true;
                vec![Effect::Quit]
            } else {
                vec![]
            }
        }
        Msg::Health(result) => {
            app.done.health = Some(result);
            app.done.health_pending = false;
            app.done.health_checked_at = Some(app.now);
            vec![]
        }
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    if key.kind != KeyEventKind::Press {
        return vec![];
    }
    app.status = None;
    if app.help {
        app.help = false;
        return vec![];
    }
    if let Some(p) = app.prompt {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                app.prompt = None;
                if p == Prompt::QuitDuringRun {
                    app.quit_after_run = true;
                }
                abort(app)
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                app.prompt = None;
                vec![]
            }
            _ => vec![],
        };
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return request_quit(app);
    }
    let typing = (app.screen == Screen::Connect && app.connect.editing.is_some())
        || (app.screen == Screen::Tables && app.tables.filter_edit.is_some());
    if !typing {
        match key.code {
            KeyCode::Char('?') => {
                app.help = true;
                return vec![];
            }
            KeyCode::Char('q') => return request_quit(app),
            _ => {}
        }
    }
    match app.screen {
        Screen::Connect => connect_key(app, key),
        Screen::Preflight => preflight_key(app, key),
        Screen::Resume => resume_key(app, key),
        Screen::Tables => tables_key(app, key),
        Screen::Review => review_key(app, key),
        Screen::Run => run_key(app, key),
        Screen::Done => done_key(app, key),
    }
}

fn request_quit(app: &mut App) -> Vec<Effect> {
    if matches!(app.resume.undo, Undo::Running) {
        app.set_status(
            StatusLevel::Error,
            "the cleanup is running: quit once it has finished",
        );
        vec![]
    } else if app.run_active() {
        app.prompt = Some(Prompt::QuitDuringRun);
        vec![]
    } else {
        app.quit = true;
        vec![Effect::Quit]
    }
}

fn abort(app: &mut App) -> Vec<Effect> {
    match app.run.as_mut() {
        Some(view) if view.running() => {
            view.run.aborting = true;
            view.run.gate = None;
            vec![Effect::Abort]
        }
        _ if app.quit_after_run => {
            app.quit = true;
            vec![Effect::Quit]
        }
        _ => vec![],
    }
}

fn connect_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let c = &mut app.connect;
    if let Some(edit) = c.editing.as_mut() {
        match edit.handle(key) {
            EditOutcome::Submit => {
                let text = std::mem::take(&mut edit.text);
                c.editing = None;
                let f = c.field();
                c.set_value(f, text);
                c.focus = (c.focus + 1).min(Field::ALL.len() - 1);
            }
            EditOutcome::Cancel => c.editing = None,
            _ => {}
        }
        return vec![];
    }
    let last = Field::ALL.len() - 1;
    match key.code {
        KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => c.focus = c.focus.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => c.focus = (c.focus + 1).min(last),
        KeyCode::Home | KeyCode::Char('g') => c.focus = 0,
        KeyCode::End | KeyCode::Char('G') => c.focus = last,
        KeyCode::Enter if c.field() == Field::Continue => return go_preflight(app),
        KeyCode::Enter | KeyCode::Char('e') if c.field() != Field::Continue => {
            let f = c.field();
            let start = if f.is_password() {
                String::new()
            } else {
                c.value(f)
            };
            c.editing = Some(LineEdit::new(&start));
        }
        KeyCode::Char('t') => return test_connections(app),
        KeyCode::Char('n') => return go_preflight(app),
        _ => {}
    }
    vec![]
}

fn test_connections(app: &mut App) -> Vec<Effect> {
    let mut out = Vec::new();
    for side in [Side::Here, Side::There, Side::Control] {
        match app.connect.spec_for(side) {
            Ok(spec) => {
                let seq = app.connect.next_seq;
                app.connect.next_seq += 1;
                app.connect.set_test(side, TestState::Testing { seq });
                let fallback = app.connect.fallback_for(side).map(Box::new);
                out.push(Effect::TestConnection {
                    side,
                    spec: Box::new(spec),
                    fallback,
                    seq,
                });
            }
            Err(e) => app.connect.set_test(side, TestState::Failed(e)),
        }
    }
    out
}

/// Validates the draft (tables not chosen yet count as `all`) and starts the checks.
fn go_preflight(app: &mut App) -> Vec<Effect> {
    let mut d = app.connect.draft.clone();
    if d.tables.trim().is_empty() {
        d.tables = "all".into();
    }
    match d.build() {
        Err(e) => {
            let field = Field::of_error(&e);
            if let Some(f) = field {
                app.connect.focus = Field::ALL
                    .iter()
                    .position(|x| *x == f)
                    .unwrap_or(app.connect.focus);
            }
            app.connect.error = Some((field, e.message));
            vec![]
        }
        Ok(s) => {
            app.connect.error = None;
            app.settings = Some(s.clone());
            app.screen = Screen::Preflight;
            app.preflight.loading = true;
            app.preflight.findings.clear();
            app.lookup += 1;
            vec![Effect::FindEarlier(Box::new(s), app.lookup)]
        }
    }
}

/// The wizard was opened on a bootstrap an earlier run started: it resumes that one, with its
/// tables, instead of preflighting a new one that would find its own objects in the way.
fn open_resume(app: &mut App, earlier: Earlier) -> Vec<Effect> {
    let Some(base) = app.settings.clone() else {
        return vec![];
    };
    let s = earlier.settings(&base);
    app.connect.draft.tables = earlier
        .tables
        .iter()
        .map(|t| t.sql())
        .collect::<Vec<_>>()
        .join(",");
    app.preflight.loading = false;
    app.resume = ResumeState::new(earlier, app.ui());
    app.settings = Some(s.clone());
    app.screen = Screen::Resume;
    app.lookup += 1;
    vec![Effect::PrepareResume(Box::new(s), app.lookup)]
}

fn resume_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let Some(s) = app.settings.clone() else {
        return vec![];
    };
    let r = &mut app.resume;
    match &r.undo {
        Undo::Review(plan, _) => {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    let plan = plan.clone();
                    r.undo = Undo::Running;
                    vec![Effect::RunCleanup {
                        settings: Box::new(s),
                        plan,
                    }]
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    r.undo = Undo::Not;
                    vec![]
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    r.checks.scroll = r.checks.scroll.saturating_sub(1);
                    vec![]
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    r.checks.scroll += 1;
                    vec![]
                }
                _ => vec![],
            };
        }
        Undo::Planning | Undo::Running => return vec![],
        Undo::Done => {
            if key.code == KeyCode::Enter {
                app.resume = ResumeState {
                    ui: app.ui(),
                    ..Default::default()
                };
                app.screen = Screen::Preflight;
                return start_checks(app, s);
            }
            return vec![];
        }
        Undo::Not | Undo::Failed(_) => {}
    }
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => r.checks.scroll = r.checks.scroll.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => r.checks.scroll += 1,
        KeyCode::Esc => {
            app.lookup += 1;
            app.screen = Screen::Connect;
        }
        // Read the earlier run again when that failed; otherwise only the checks.
        KeyCode::Char('R') if r.plan.is_none() && r.error.is_some() => {
            r.error = None;
            r.checks.loading = true;
            return vec![Effect::PrepareResume(Box::new(s), app.lookup)];
        }
        KeyCode::Char('R') if !r.checks.loading => {
            r.checks.loading = true;
            return vec![Effect::ResumeChecks(Box::new(s), app.lookup)];
        }
        KeyCode::Char('x') => {
            r.undo = Undo::Planning;
            return vec![Effect::PlanCleanup(Box::new(s))];
        }
        KeyCode::Char('c') | KeyCode::Enter | KeyCode::Char('r') => {
            let mode = if key.code == KeyCode::Char('r') {
                ConfirmMode::Automatic
            } else {
                ConfirmMode::EachStep
            };
            if r.ready() {
                if let Some(plan) = r.plan.clone() {
                    return run_plan(app, plan, mode);
                }
            }
            let why = if r.checks.has_fail() {
                "a failing check blocks the way: fix it, then press R"
            } else {
                "still reading the earlier run and checking"
            };
            app.set_status(StatusLevel::Error, why);
        }
        _ => {}
    }
    vec![]
}

fn start_checks(app: &mut App, s: Settings) -> Vec<Effect> {
    app.preflight.loading = true;
    app.preflight.findings.clear();
    app.tables.loading = true;
    app.tables.error = None;
    vec![Effect::LoadTables(Box::new(s))]
}

fn preflight_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let p = &mut app.preflight;
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => p.scroll = p.scroll.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => p.scroll += 1,
        KeyCode::PageUp => p.scroll = p.scroll.saturating_sub(10),
        KeyCode::PageDown => p.scroll += 10,
        KeyCode::Esc => app.screen = Screen::Connect,
        KeyCode::Char('r') if !p.loading => {
            if let Some(s) = app.settings.clone() {
                return start_checks(app, s);
            }
        }
        KeyCode::Enter => {
            if p.loading {
                app.set_status(StatusLevel::Info, "the checks are still running");
            } else if p.has_fail() {
                let n = p.count(Severity::Fail);
                app.set_status(
                    StatusLevel::Error,
                    format!(
                        "{n} failing check{} block the way: fix, then press r",
                        if n == 1 { "" } else { "s" }
                    ),
                );
            } else {
                app.screen = Screen::Tables;
            }
        }
        _ => {}
    }
    vec![]
}

fn tables_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let t = &mut app.tables;
    if let Some(edit) = t.filter_edit.as_mut() {
        match edit.handle(key) {
            EditOutcome::Changed => {
                let f = edit.text.clone();
                t.set_filter(&f);
            }
            EditOutcome::Submit => t.filter_edit = None,
            EditOutcome::Cancel => {
                t.filter_edit = None;
                t.set_filter("");
            }
            _ => {}
        }
        return vec![];
    }
    if t.loading {
        if key.code == KeyCode::Esc {
            app.screen = Screen::Preflight;
        }
        return vec![];
    }
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => t.move_cursor(-1),
        KeyCode::Down | KeyCode::Char('j') => t.move_cursor(1),
        KeyCode::PageUp => t.move_cursor(-10),
        KeyCode::PageDown => t.move_cursor(10),
        KeyCode::Home | KeyCode::Char('g') => t.move_cursor(-(t.all.len() as isize)),
        KeyCode::End | KeyCode::Char('G') => t.move_cursor(t.all.len() as isize),
        KeyCode::Char(' ') => {
            t.toggle();
        }
        KeyCode::Char('a') => t.select_all(),
        KeyCode::Char('i') => t.invert(),
        KeyCode::Char('x') => t.toggle_left_out(),
        KeyCode::Char('s') => t.toggle_sort(),
        KeyCode::Char('c') => return toggle_convert_generated(app),
        KeyCode::Char('/') => t.filter_edit = Some(LineEdit::new(&t.filter)),
        KeyCode::Char('r') if t.error.is_some() => {
            if let Some(s) = app.settings.clone() {
                app.tables.loading = true;
                app.tables.error = None;
                return vec![Effect::LoadTables(Box::new(s))];
            }
        }
        KeyCode::Esc => app.screen = Screen::Preflight,
        KeyCode::Enter => return go_review(app),
        _ => {}
    }
    vec![]
}

/// `c` on the Tables screen: `--convert-generated` on (tables with generated columns become
/// eligible, the highlighted one is checked) or off (the catalog is listed again without it,
/// keeping what is checked and what is left out).
fn toggle_convert_generated(app: &mut App) -> Vec<Effect> {
    if !app.tables.all.iter().any(|t| !t.generation.is_empty()) {
        app.set_status(StatusLevel::Info, "no table has a generated column");
        return vec![];
    }
    let on = !app.connect.draft.convert_generated;
    app.connect.draft.convert_generated = on;
    if let Some(s) = app.settings.as_mut() {
        s.convert_generated = on;
    }
    if on {
        crate::engine::generated::opt_in(&mut app.tables.all, true);
        if let Some(i) = app.tables.highlighted() {
            let t = &app.tables.all[i];
            if !t.generation.is_empty() && t.is_eligible() && !app.tables.left_out[i] {
                app.tables.checked[i] = true;
            }
        }
        app.set_status(
            StatusLevel::Info,
            "generated columns will be converted: plain columns a trigger computes, on both sides (see the review; c: undo)",
        );
        return vec![];
    }
    app.connect.draft.tables = app.tables.selection_arg();
    app.connect.draft.leave_out = app.tables.leave_out_arg();
    app.set_status(StatusLevel::Info, "generated columns will not be converted");
    match app.settings.clone() {
        Some(s) => {
            app.tables.loading = true;
            vec![Effect::LoadTables(Box::new(s))]
        }
        None => vec![],
    }
}

fn go_review(app: &mut App) -> Vec<Effect> {
    let selection = app.tables.selection_arg();
    if selection.is_empty() {
        app.set_status(StatusLevel::Error, "check at least one table (space)");
        return vec![];
    }
    app.connect.draft.tables = selection;
    app.connect.draft.leave_out = app.tables.leave_out_arg();
    match app.connect.draft.build() {
        Err(e) => {
            app.set_status(StatusLevel::Error, e.message);
            vec![]
        }
        Ok(s) => {
            app.settings = Some(s.clone());
            app.screen = Screen::Review;
            build_plan(app, s)
        }
    }
}

fn build_plan(app: &mut App, s: Settings) -> Vec<Effect> {
    app.review.loading = true;
    app.review.error = None;
    app.review.plan = None;
    vec![Effect::BuildPlan(Box::new(s))]
}

fn review_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let r = &mut app.review;
    if r.loading {
        if key.code == KeyCode::Esc {
            app.screen = Screen::Tables;
        }
        return vec![];
    }
    if r.plan.is_none() {
        match key.code {
            KeyCode::Esc => app.screen = Screen::Tables,
            KeyCode::Enter => {
                if let Some(s) = app.settings.clone() {
                    return build_plan(app, s);
                }
            }
            _ => {}
        }
        return vec![];
    }
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => r.scroll_by(-1),
        KeyCode::Down | KeyCode::Char('j') => r.scroll_by(1),
        KeyCode::PageUp => r.scroll_by(-15),
        KeyCode::PageDown | KeyCode::Char(' ') => r.scroll_by(15),
        KeyCode::Home | KeyCode::Char('g') => r.scroll = 0,
        KeyCode::End | KeyCode::Char('G') => r.scroll = usize::MAX / 2,
        KeyCode::Esc => app.screen = Screen::Tables,
        KeyCode::Char('s') => return save(app, SaveKind::Script),
        KeyCode::Char('p') => return save(app, SaveKind::PlanFile),
        KeyCode::Char('r') => return start_run(app, ConfirmMode::Automatic),
        KeyCode::Char('c') | KeyCode::Enter => return start_run(app, ConfirmMode::EachStep),
        _ => {}
    }
    vec![]
}

fn save(app: &mut App, what: SaveKind) -> Vec<Effect> {
    let (Some(plan), Some(s)) = (&app.review.plan, &app.settings) else {
        return vec![];
    };
    let dir = s.state_dir();
    match what {
        SaveKind::Script => vec![Effect::SaveScript {
            path: dir.join(format!("bootstrap-{}.sh", plan.fingerprint)),
            contents: plan.script(s),
        }],
        SaveKind::PlanFile => match crate::planfile::save(s) {
            Ok(contents) => vec![Effect::SavePlanFile {
                path: dir.join(format!("plan-{}.toml", plan.fingerprint)),
                contents,
            }],
            Err(e) => {
                app.set_status(
                    StatusLevel::Error,
                    format!("cannot write the plan file: {e:#}"),
                );
                vec![]
            }
        },
    }
}

fn start_run(app: &mut App, mode: ConfirmMode) -> Vec<Effect> {
    match app.review.plan.clone() {
        Some(plan) => run_plan(app, plan, mode),
        None => vec![],
    }
}

fn run_plan(app: &mut App, plan: Plan, mode: ConfirmMode) -> Vec<Effect> {
    let Some(s) = app.settings.clone() else {
        return vec![];
    };
    app.run = Some(RunView::new(&plan, mode, &s.names.sync, app.ui()));
    app.screen = Screen::Run;
    app.quit_after_run = false;
    vec![Effect::StartRun {
        plan: Box::new(plan),
        settings: Box::new(s),
        mode,
    }]
}

fn run_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let Some(view) = app.run.as_mut() else {
        return vec![];
    };
    if view.run.gate.is_some() && view.running() {
        let reply = match key.code {
            KeyCode::Char('p') => Some(GateReply::Proceed),
            KeyCode::Char('s') => Some(GateReply::Skip),
            KeyCode::Char('a') => Some(GateReply::Abort),
            KeyCode::Enter => Some(view.gate_choice),
            KeyCode::Left | KeyCode::Char('h') | KeyCode::BackTab => {
                view.gate_choice = match view.gate_choice {
                    GateReply::Proceed | GateReply::Skip => GateReply::Proceed,
                    GateReply::Abort => GateReply::Skip,
                };
                return vec![];
            }
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Tab => {
                view.gate_choice = match view.gate_choice {
                    GateReply::Proceed => GateReply::Skip,
                    GateReply::Skip | GateReply::Abort => GateReply::Abort,
                };
                return vec![];
            }
            _ => None,
        };
        if let Some(r) = reply {
            view.run.gate = None;
            if r == GateReply::Abort {
                view.run.aborting = true;
            }
            return vec![Effect::GateReply(r)];
        }
    }
    let len = view.run.log.len();
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => view.log_scroll = (view.log_scroll + 1).min(len),
        KeyCode::Down | KeyCode::Char('j') => view.log_scroll = view.log_scroll.saturating_sub(1),
        KeyCode::PageUp => view.log_scroll = (view.log_scroll + 10).min(len),
        KeyCode::PageDown => view.log_scroll = view.log_scroll.saturating_sub(10),
        KeyCode::Home | KeyCode::Char('g') => view.log_scroll = len,
        KeyCode::End | KeyCode::Char('G') => view.log_scroll = 0,
        KeyCode::Char('x') if view.running() && !view.run.aborting => {
            app.prompt = Some(Prompt::AbortRun)
        }
        KeyCode::Char(' ') if view.running() => {
            let held = view
                .run
                .here
                .latest
                .as_ref()
                .is_some_and(|v| v.mode == Mode::Held);
            return vec![Effect::Steer(if held {
                Steer::Resume
            } else {
                Steer::Pause
            })];
        }
        KeyCode::Char('-') if view.running() => return vec![Effect::Steer(Steer::Slower)],
        KeyCode::Char('+') | KeyCode::Char('=') if view.running() => {
            return vec![Effect::Steer(Steer::Faster)]
        }
        KeyCode::Enter if !view.running() => return go_done(app),
        _ => {}
    }
    vec![]
}

fn go_done(app: &mut App) -> Vec<Effect> {
    let Some(view) = &app.run else { return vec![] };
    let mut done = DoneState::from_run(&view.run, app.log_path.clone(), app.ui());
    // Keep the health already read when coming back from the run view.
    if app.done.watch && done.watch {
        done.health = app.done.health.take();
        done.health_checked_at = app.done.health_checked_at;
        done.health_requested_at = app.done.health_requested_at;
        done.health_pending = app.done.health_pending;
    }
    app.done = done;
    app.screen = Screen::Done;
    if app.done.health_due(app.now) {
        request_health(app)
    } else {
        vec![]
    }
}

fn request_health(app: &mut App) -> Vec<Effect> {
    let Some(s) = &app.settings else {
        return vec![];
    };
    if !app.done.watch || app.done.health_pending {
        return vec![];
    }
    app.done.health_pending = true;
    app.done.health_requested_at = Some(app.now);
    vec![Effect::RefreshHealth(Box::new(s.clone()))]
}

fn done_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('r') => request_health(app),
        KeyCode::Esc => {
            app.screen = Screen::Run;
            vec![]
        }
        _ => vec![],
    }
}
