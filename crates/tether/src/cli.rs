//! The command line (DESIGN §5): argument definitions and rendering. Each command parses its
//! arguments, calls one application function, and prints the result.

use crate::app::{
    App, Diagnosis, ImportFileOptions, Progress, ReconcileOptions, ReconcileReport, Who,
};
use crate::clock;
use crate::error::{AppError, AppResult};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use tether_core::{ExternalIdField, Situation};
use tether_store::{NewSource, Store, UserFilter, UserRecord};

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "Keeps an application's users linked to an identity platform's accounts"
)]
pub struct Cli {
    /// Database URL: sqlite:PATH (created if missing) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        global = true,
        env = "TETHER_DATABASE_URL",
        default_value = "sqlite:tether.db",
        hide_env_values = true
    )]
    pub database: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import users or accounts from CSV or JSON Lines (.csv, .jsonl).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Add or list sources of accounts.
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Match users against a source's stored accounts and write External IDs.
    Reconcile {
        #[arg(long)]
        source: String,
        /// Which account field fills External ID (saved on the source by a real run).
        #[arg(long, value_parser = parse_field)]
        field: Option<ExternalIdField>,
        /// Show the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Changes written per transaction: a kill loses at most this much work, which a re-run redoes.
        #[arg(long, default_value_t = crate::app::APPLY_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch_size: u32,
    },
    /// Explain why a user is or is not linked (USER: id, username or e-mail).
    Diagnose {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        #[arg(long)]
        all: bool,
        /// The source to diagnose against (default: the only one).
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_enum, default_value_t = DiagnoseFormat::Text)]
        format: DiagnoseFormat,
    },
    /// List users with their External ID, optionally those in one situation.
    Users {
        /// Only users in this situation at the last reconcile.
        #[arg(long, value_parser = parse_situation)]
        situation: Option<Situation>,
        /// The source whose situations to show (default: the only one).
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Show the audit trail of External ID changes, newest first.
    Audit {
        /// Only this user's changes (id, username or e-mail).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the admin server: web UI, REST API, SCIM, sign-in.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound URL is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Fill an empty database with a demo organisation and a demo source first.
        #[arg(long)]
        demo: bool,
        /// Where browsers reach this server (default http://LISTEN); https turns on Secure cookies.
        #[arg(long, env = "TETHER_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Manage local administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Pull User Data as a job: fetch a source's accounts, store, plan, apply (progress bar on a terminal).
    Pull(crate::jobs::cli::PullArgs),
    /// Pull jobs: list, show, cancel, approve, reject, undo, report, schedule, run.
    #[command(subcommand)]
    Jobs(crate::jobs::cli::JobsCommand),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an administrator; the password is read from the terminal, or from stdin with --password-stdin.
    Create {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an administrator's password (read as for create).
    Passwd {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditFormat {
    Table,
    Jsonl,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Users: header id,username,email,display_name,active,external_id.
    Users {
        file: PathBuf,
        /// Import the valid rows and report the others (default: refuse the whole file).
        #[arg(long)]
        skip_invalid: bool,
        /// Overwrite stored External IDs that differ from the file's (audited).
        #[arg(long)]
        replace_external_ids: bool,
    },
    /// Accounts of one source: header account_id,username,key,email,display_name,active,account_type.
    Accounts {
        file: PathBuf,
        #[arg(long)]
        source: String,
        #[arg(long)]
        skip_invalid: bool,
    },
}

/// How to reach a source (see `tether_sources::SourceSettings`).
#[derive(clap::Args, Debug, Default)]
pub struct ConnectionArgs {
    /// Jira site (https://example.atlassian.net) or SCIM base URL (…/scim/v2).
    #[arg(long)]
    base_url: Option<String>,
    /// Jira Cloud: the e-mail address the API token belongs to.
    #[arg(long)]
    user: Option<String>,
    /// File sources: the accounts file (CSV or JSON Lines) to read on each pull.
    #[arg(long)]
    path: Option<String>,
    /// SCIM sources: `id` (default) or `externalId` as the account ID.
    #[arg(long)]
    account_id_attribute: Option<String>,
    /// Read the credential (API token, personal access token, bearer token) from this
    /// environment variable; it is stored sealed and never printed.
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
}

impl ConnectionArgs {
    fn apply(
        &self,
        mut settings: tether_sources::SourceSettings,
    ) -> tether_sources::SourceSettings {
        if let Some(v) = &self.base_url {
            settings.base_url = Some(v.clone());
        }
        if let Some(v) = &self.user {
            settings.user = Some(v.clone());
        }
        if let Some(v) = &self.path {
            settings.path = Some(v.clone());
        }
        if let Some(v) = &self.account_id_attribute {
            settings.account_id_attribute = Some(v.clone());
        }
        settings
    }

    fn secret(&self) -> AppResult<Option<String>> {
        match &self.secret_env {
            None => Ok(None),
            Some(var) => std::env::var(var).map(Some).map_err(|_| {
                AppError::Input(format!(
                    "--secret-env {var}: the environment variable is not set"
                ))
            }),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SourcesCommand {
    /// Add a source.
    Add {
        name: String,
        /// jira_cloud, jira_dc, scim, or file (accounts from a CSV/JSON Lines file).
        #[arg(long, default_value = "file", value_parser = ["file", "jira_cloud", "jira_dc", "scim"])]
        kind: String,
        /// Which account field fills External ID.
        #[arg(long, value_parser = parse_field, default_value = "account_id")]
        field: ExternalIdField,
        /// Link users to inactive accounts too.
        #[arg(long)]
        link_inactive: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Change a source's connection settings or credential.
    Set {
        name: String,
        #[arg(long, value_parser = parse_field)]
        field: Option<ExternalIdField>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List sources.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["admin", "scim"])]
        scope: String,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by its id (from `token list`).
    Revoke { id: i64 },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnoseFormat {
    Text,
    Json,
    Jsonl,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Csv,
    Jsonl,
}

fn parse_field(text: &str) -> Result<ExternalIdField, String> {
    text.parse()
        .map_err(|e: tether_core::UnknownName| e.to_string())
}

fn parse_situation(text: &str) -> Result<Situation, String> {
    text.parse()
        .map_err(|e: tether_core::UnknownName| e.to_string())
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
///
/// It also carries the crash-test hook: with `TETHER_TEST_ABORT_AFTER_BATCHES=N` in the
/// environment, the process aborts (as a `kill -9` would end it) right after the N-th
/// committed batch. The fault tests use it to prove a killed run loses nothing.
struct Bar {
    bar: indicatif::ProgressBar,
    abort_after: Option<u64>,
    batches: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn new() -> Self {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let abort_after = std::env::var("TETHER_TEST_ABORT_AFTER_BATCHES")
            .ok()
            .and_then(|n| n.parse().ok());
        Bar {
            bar,
            abort_after,
            batches: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Progress for Bar {
    fn phase(&self, name: &str, total: Option<u64>) {
        let style = match total {
            Some(total) => {
                self.bar.set_length(total);
                self.bar.set_position(0);
                indicatif::ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} ({eta})")
            }
            None => indicatif::ProgressStyle::with_template("{spinner} {msg}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_message(name.to_owned());
        self.bar.tick();
    }

    fn advance(&self, by: u64) {
        self.bar.inc(by);
        let done = self
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if self.abort_after == Some(done) {
            std::process::abort();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn print_json(value: &impl serde::Serialize) -> AppResult<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| AppError::Io(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Runs one command.
pub async fn run(app: &App, command: Command) -> AppResult<()> {
    match command {
        Command::Import(ImportCommand::Users {
            file,
            skip_invalid,
            replace_external_ids,
        }) => {
            let options = ImportFileOptions {
                skip_invalid,
                replace_external_ids,
            };
            let bar = Bar::new();
            let report = app.import_users(&file, options, clock::now(), &bar).await?;
            drop(bar);
            let s = &report.summary;
            println!(
                "{}: {} rows; {} inserted, {} updated, {} unchanged; {} External IDs set{}",
                report.file,
                report.rows,
                s.inserted,
                s.updated,
                s.unchanged,
                s.external_ids_set,
                skipped(report.skipped)
            );
        }
        Command::Import(ImportCommand::Accounts {
            file,
            source,
            skip_invalid,
        }) => {
            let options = ImportFileOptions {
                skip_invalid,
                replace_external_ids: false,
            };
            let bar = Bar::new();
            let report = app
                .import_accounts(&file, &source, options, clock::now(), &bar)
                .await?;
            drop(bar);
            let s = &report.summary;
            println!(
                "{}: {} accounts for source {source}; {} inserted, {} updated, {} unchanged{}",
                report.file,
                report.rows,
                s.inserted,
                s.updated,
                s.unchanged,
                skipped(report.skipped)
            );
        }
        Command::Sources(SourcesCommand::Add {
            name,
            kind,
            field,
            link_inactive,
            connection,
        }) => {
            let secret = connection.secret()?;
            let at = clock::now();
            let source = app
                .add_source(
                    NewSource {
                        name,
                        kind,
                        external_id_field: field,
                        link_inactive,
                    },
                    at,
                )
                .await?;
            let settings = connection.apply(tether_sources::SourceSettings::default());
            app.configure_source(
                &source,
                None,
                None,
                Some(&settings),
                secret.as_deref(),
                &app.actor,
                at,
            )
            .await?;
            println!(
                "added source {} (kind {}, External ID field {}{})",
                source.name,
                source.kind,
                source.external_id_field,
                if source.link_inactive {
                    ", links inactive accounts"
                } else {
                    ""
                }
            );
        }
        Command::Sources(SourcesCommand::List) => {
            let sources = app.store.list_sources().await?;
            println!(
                "{:<24} {:<10} {:<12} LINK INACTIVE",
                "NAME", "KIND", "FIELD"
            );
            for s in sources {
                println!(
                    "{:<24} {:<10} {:<12} {}",
                    s.name, s.kind, s.external_id_field, s.link_inactive
                );
            }
        }
        Command::Reconcile {
            source,
            field,
            dry_run,
            format,
            batch_size,
        } => {
            let bar = Bar::new();
            let options = ReconcileOptions {
                field,
                dry_run,
                batch_size: batch_size as usize,
            };
            let report = app.reconcile(&source, options, clock::now(), &bar).await?;
            drop(bar);
            match format {
                ReportFormat::Json => print_json(&report)?,
                ReportFormat::Table => print_reconcile(&report),
            }
        }
        Command::Diagnose {
            user,
            all: _,
            source,
            format,
        } => {
            let who = match &user {
                Some(user) => Who::One(user),
                None => Who::All,
            };
            let diagnoses = app.diagnose(who, source.as_deref()).await?;
            print_diagnoses(&diagnoses, format, user.is_some())?;
        }
        Command::Users {
            situation,
            source,
            format,
        } => {
            let situation = match situation {
                Some(situation) => Some((app.source(source.as_deref()).await?.pk, situation)),
                None => None,
            };
            print_users(app, situation, format).await?;
        }
        Command::Audit {
            user,
            limit,
            format,
        } => {
            let entries = app.audit(user.as_deref(), limit).await?;
            for (entry, user_id) in entries {
                match format {
                    AuditFormat::Jsonl => {
                        let mut value = serde_json::to_value(&entry)
                            .map_err(|e| AppError::Io(e.to_string()))?;
                        value["user_id"] = serde_json::Value::String(user_id);
                        println!("{value}");
                    }
                    AuditFormat::Table => println!(
                        "{}  {:<8} {:<14} {:<10} {} → {}  ({}{})",
                        entry
                            .at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        entry.origin,
                        entry.actor,
                        user_id,
                        entry.old_value.as_deref().unwrap_or("∅"),
                        entry.new_value.as_deref().unwrap_or("∅"),
                        entry.reason,
                        entry
                            .run_pk
                            .map(|r| format!(", run {r}"))
                            .unwrap_or_default()
                    ),
                }
            }
        }
        Command::Token(TokenCommand::Create { name, scope }) => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| AppError::Io(format!("no randomness: {e}")))?;
            let token = app
                .create_token(&name, &scope, secret, clock::now())
                .await?;
            println!("created token '{name}' with scope {scope}; it is shown once, store it now:");
            println!("{token}");
        }
        Command::Pull(args) => crate::jobs::cli::pull(app, args).await?,
        Command::Jobs(command) => crate::jobs::cli::jobs(app, command).await?,
        Command::Sources(SourcesCommand::Set {
            name,
            field,
            connection,
        }) => {
            let source = app.source(Some(&name)).await?;
            let (settings, _) = app.source_settings(&source).await?;
            let secret = connection.secret()?;
            app.configure_source(
                &source,
                field,
                None,
                Some(&connection.apply(settings)),
                secret.as_deref(),
                &app.actor,
                clock::now(),
            )
            .await?;
            println!("updated source {name}");
        }
        Command::Token(TokenCommand::List) => {
            println!(
                "{:<6} {:<24} {:<6} {:<20} STATE",
                "ID", "NAME", "SCOPE", "LAST USED"
            );
            for t in app.list_tokens().await? {
                println!(
                    "{:<6} {:<24} {:<6} {:<20} {}",
                    t.pk,
                    t.name,
                    t.scope,
                    t.last_used_at
                        .map(|at| at.date().to_string())
                        .unwrap_or_else(|| "never".to_owned()),
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            app.revoke_token(id, &app.actor, clock::now()).await?;
            println!("revoked token {id}");
        }
        Command::Admin(AdminCommand::Create {
            username,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            app.create_admin(&username, &password, clock::now()).await?;
            println!("created administrator '{username}'; sign in at /login");
        }
        Command::Admin(AdminCommand::Passwd {
            username,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            app.set_admin_password(&username, &password).await?;
            println!("changed the password of administrator '{username}'");
        }
        Command::Serve { .. } => {
            return Err(AppError::Input("serve is started by main".to_owned()));
        }
    }
    Ok(())
}

/// A new password from the terminal (asked twice) or from the first line of stdin.
fn read_password(from_stdin: bool) -> AppResult<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| AppError::Io(format!("stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("New password: ").map_err(|e| {
        AppError::Input(format!(
            "cannot read a password from the terminal ({e}): use --password-stdin"
        ))
    })?;
    let second = rpassword::prompt_password("Again: ")
        .map_err(|e| AppError::Input(format!("cannot read a password from the terminal ({e})")))?;
    if first != second {
        return Err(AppError::Input("the passwords differ".to_owned()));
    }
    Ok(first)
}

fn skipped(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("; {n} invalid rows skipped")
    }
}

fn print_reconcile(report: &ReconcileReport) {
    let verb = if report.dry_run {
        "dry run (nothing written)"
    } else {
        "applied"
    };
    println!(
        "source {} (External ID field {}): {} users, {} accounts — {verb}",
        report.source, report.field, report.users, report.accounts
    );
    println!("{:<20} {:>10}", "SITUATION", "USERS");
    for (situation, count) in &report.summary {
        println!("{:<20} {:>10}", situation.as_str(), count);
    }
    if report.dry_run {
        println!("{} External IDs would be written", report.planned);
    } else {
        println!(
            "{} of {} External IDs written; {} changed by someone else meanwhile (not overwritten); run {}",
            report.applied,
            report.planned,
            report.conflicts.len(),
            report.run.map(|r| r.to_string()).unwrap_or_default()
        );
    }
    let attention: u64 = report
        .summary
        .iter()
        .filter(|(s, _)| s.needs_attention())
        .map(|(_, n)| n)
        .sum();
    if attention > 0 {
        println!(
            "{attention} users need attention: `tether diagnose --all --source {}` explains each",
            report.source
        );
    }
}

fn print_diagnoses(diagnoses: &[Diagnosis], format: DiagnoseFormat, one: bool) -> AppResult<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| AppError::Io(e.to_string());
    match format {
        DiagnoseFormat::Json if one && diagnoses.len() == 1 => print_json(&diagnoses[0])?,
        DiagnoseFormat::Json => print_json(&diagnoses)?,
        DiagnoseFormat::Jsonl => {
            for d in diagnoses {
                let line = serde_json::to_string(d).map_err(|e| AppError::Io(e.to_string()))?;
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        DiagnoseFormat::Text => {
            for d in diagnoses {
                writeln!(
                    out,
                    "{} ({}) <{}>",
                    d.user_id,
                    d.username,
                    d.email.as_deref().unwrap_or("no e-mail")
                )
                .map_err(io)?;
                writeln!(out, "  situation:   {}", d.situation).map_err(io)?;
                writeln!(
                    out,
                    "  external id: {}{}",
                    d.external_id.as_deref().unwrap_or("(none)"),
                    d.external_id_origin
                        .map(|o| format!(" (set by {o})"))
                        .unwrap_or_default()
                )
                .map_err(io)?;
                writeln!(out, "  why:         {}", d.explanation).map_err(io)?;
                writeln!(out, "  fix:         {}", d.fix).map_err(io)?;
                for a in &d.evidence.accounts {
                    writeln!(
                        out,
                        "  account:     {} <{}> {} {}{}",
                        a.account_id,
                        a.email.as_deref().unwrap_or("no e-mail"),
                        a.account_type,
                        if a.active { "active" } else { "inactive" },
                        a.value
                            .as_deref()
                            .map(|v| format!(", {} = {v}", d.field))
                            .unwrap_or_default()
                    )
                    .map_err(io)?;
                }
                for u in &d.evidence.users {
                    writeln!(
                        out,
                        "  user:        {} ({}) <{}>{}",
                        u.id,
                        u.username,
                        u.email.as_deref().unwrap_or("no e-mail"),
                        u.external_id
                            .as_deref()
                            .map(|e| format!(" External ID {e}"))
                            .unwrap_or_default()
                    )
                    .map_err(io)?;
                }
                writeln!(out).map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)
}

async fn print_users(
    app: &App,
    situation: Option<(i64, Situation)>,
    format: ListFormat,
) -> AppResult<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| AppError::Io(e.to_string());
    let mut csv_writer = None;
    match format {
        ListFormat::Table => writeln!(
            out,
            "{:<16} {:<24} {:<36} {:<28} {:<6}",
            "ID", "USERNAME", "EMAIL", "EXTERNAL ID", "ACTIVE"
        )
        .map_err(io)?,
        ListFormat::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout());
            writer
                .write_record([
                    "id",
                    "username",
                    "email",
                    "display_name",
                    "active",
                    "external_id",
                ])
                .map_err(|e| AppError::Io(e.to_string()))?;
            csv_writer = Some(writer);
        }
        ListFormat::Jsonl => {}
    }
    let mut after = None;
    loop {
        let page = app
            .list_users(&UserFilter {
                after_pk: after,
                limit: 5_000,
                situation,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.pk);
        for user in &page {
            write_user(
                &mut out,
                &mut csv_writer,
                user,
                format,
                situation.map(|s| s.1),
            )?;
        }
    }
    if let Some(writer) = csv_writer.as_mut() {
        writer.flush().map_err(io)?;
    }
    out.flush().map_err(io)
}

fn write_user(
    out: &mut impl Write,
    csv_writer: &mut Option<csv::Writer<std::io::Stdout>>,
    user: &UserRecord,
    format: ListFormat,
    situation: Option<Situation>,
) -> AppResult<()> {
    let io = |e: std::io::Error| AppError::Io(e.to_string());
    match format {
        ListFormat::Table => writeln!(
            out,
            "{:<16} {:<24} {:<36} {:<28} {:<6}",
            user.id,
            user.username,
            user.email.as_deref().unwrap_or(""),
            user.external_id.as_deref().unwrap_or(""),
            user.active
        )
        .map_err(io),
        ListFormat::Csv => match csv_writer {
            Some(writer) => writer
                .write_record([
                    user.id.as_str(),
                    &user.username,
                    user.email.as_deref().unwrap_or(""),
                    &user.display_name,
                    if user.active { "true" } else { "false" },
                    user.external_id.as_deref().unwrap_or(""),
                ])
                .map_err(|e| AppError::Io(e.to_string())),
            None => Ok(()),
        },
        ListFormat::Jsonl => {
            let value = serde_json::json!({
                "id": user.id,
                "username": user.username,
                "email": user.email,
                "display_name": user.display_name,
                "active": user.active,
                "external_id": user.external_id,
                "external_id_origin": user.external_id_origin,
                "excluded": user.excluded,
                "situation": situation,
            });
            writeln!(out, "{value}").map_err(io)
        }
    }
}
