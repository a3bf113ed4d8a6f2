//! `tether pull` and `tether jobs …`: parse, call one job function, render.

use super::report::PullReport;
use super::runner::{self, Observer};
use crate::app::App;
use crate::clock;
use crate::error::{AppError, AppResult};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use tether_store::jobs::{Job, JobProgress, JobState};

#[derive(Args, Debug)]
pub struct PullArgs {
    #[arg(long)]
    pub source: String,
    /// Fetch and plan against the fetched accounts; store and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even when the plan changes more users than the mass-change threshold
    /// (the safeguard's approval, given up front and recorded on the job).
    #[arg(long)]
    pub approve: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one job with its progress and report.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cancel a queued or held job, or stop a running one at its next page or batch.
    Cancel { id: i64 },
    /// Approve a job held by the mass-change safeguard, and run it here.
    Approve { id: i64 },
    /// Reject a held job: it applies nothing.
    Reject { id: i64 },
    /// Revert a finished job's changes where the External ID still holds the job's value.
    Undo {
        id: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a job's report with its changes.
    Report {
        id: i64,
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
    },
    /// Pull a source on a schedule (run by `tether serve`): every N minutes, or `off`.
    Schedule {
        #[arg(long)]
        source: String,
        #[arg(long)]
        every: String,
    },
    /// Run queued jobs (and jobs whose runner died) here until none is left.
    Run,
}

fn parse_state(text: &str) -> Result<JobState, String> {
    text.parse().map_err(|_| {
        format!(
            "unknown job state '{text}': expected one of {}",
            JobState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {msg:40} [{bar:30}] {pos}/{len}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Bar(bar)
    }
}

impl Observer for Bar {
    fn progress(&self, p: &JobProgress) {
        let phase = p.phase.as_deref().unwrap_or("queued");
        let (message, position, length) = match phase {
            "fetch" | "store" => (
                format!(
                    "{phase}: {} accounts, {} pages",
                    p.accounts_fetched, p.pages
                ),
                0,
                0,
            ),
            "apply" => (
                "apply: External IDs written".to_owned(),
                p.changes_applied,
                p.changes_planned,
            ),
            other => (
                format!(
                    "{other}: {} users, {} changes",
                    p.users_planned, p.changes_planned
                ),
                0,
                0,
            ),
        };
        self.0.set_message(message);
        self.0.set_length(length);
        self.0.set_position(position);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs the job here through the same lease as the server's runner; when another runner
/// already holds it, follows it until it stops.
async fn run_to_end(app: &App, job: i64, observer: &dyn Observer) -> AppResult<Job> {
    let owner = runner::owner_name("cli");
    if let Some(job) = runner::claim_and_run(app, Some(job), &owner, clock::now, observer).await? {
        return Ok(job);
    }
    loop {
        let current = super::get(app, job).await?;
        observer.progress(&current.progress);
        if !matches!(current.state, JobState::Running | JobState::Queued) {
            return Ok(current);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// `tether pull --source NAME [--dry-run] [--approve]`.
pub async fn pull(app: &App, args: PullArgs) -> AppResult<()> {
    let actor = app.actor.clone();
    let job = super::start(app, &args.source, args.dry_run, &actor, clock::now()).await?;
    let bar = Bar::new();
    let mut job = run_to_end(app, job.pk, &bar).await?;
    if job.state == JobState::AwaitingApproval && args.approve {
        super::approve(app, job.pk, &actor, clock::now()).await?;
        job = run_to_end(app, job.pk, &bar).await?;
    }
    drop(bar);
    match args.format {
        Format::Json => print_json(&job)?,
        Format::Table => print_job(&job),
    }
    finished(&job)
}

/// A failed job is a failed command.
fn finished(job: &Job) -> AppResult<()> {
    match job.state {
        JobState::Failed => Err(AppError::Io(format!(
            "job {} failed: {}",
            job.pk,
            job.error.as_deref().unwrap_or("no reason given")
        ))),
        _ => Ok(()),
    }
}

/// `tether jobs …`.
pub async fn jobs(app: &App, command: JobsCommand) -> AppResult<()> {
    let actor = app.actor.clone();
    match command {
        JobsCommand::List {
            source,
            state,
            limit,
            format,
        } => {
            let jobs = super::list(app, source.as_deref(), state, None, limit).await?;
            match format {
                Format::Json => print_json(&jobs)?,
                Format::Table => {
                    println!(
                        "{:>6} {:<20} {:<18} {:<9} {:>10} {:>10} {:<24}",
                        "ID", "SOURCE", "STATE", "PHASE", "PLANNED", "APPLIED", "REQUESTED BY"
                    );
                    for job in jobs {
                        println!(
                            "{:>6} {:<20} {:<18} {:<9} {:>10} {:>10} {:<24}",
                            job.pk,
                            job.source,
                            job.state.as_str(),
                            job.progress.phase.as_deref().unwrap_or("-"),
                            job.progress.changes_planned,
                            job.progress.changes_applied,
                            job.requested_by
                        );
                    }
                }
            }
        }
        JobsCommand::Show { id, format } => {
            let job = super::get(app, id).await?;
            match format {
                Format::Json => print_json(&job)?,
                Format::Table => print_job(&job),
            }
        }
        JobsCommand::Cancel { id } => {
            let job = super::cancel(app, id, &actor, clock::now()).await?;
            if job.state == JobState::Running {
                println!("job {id}: asked to stop; it stops at its next page or batch");
            } else {
                println!("job {id}: {}", job.state);
            }
        }
        JobsCommand::Approve { id } => {
            super::approve(app, id, &actor, clock::now()).await?;
            println!("job {id}: approved; applying");
            let bar = Bar::new();
            let job = run_to_end(app, id, &bar).await?;
            drop(bar);
            print_job(&job);
            finished(&job)?;
        }
        JobsCommand::Reject { id } => {
            let job = super::reject(app, id, &actor, clock::now()).await?;
            println!("job {id}: rejected; nothing applied ({})", job.state);
        }
        JobsCommand::Undo { id, format } => {
            let report = super::undo(app, id, &actor, clock::now()).await?;
            match format {
                Format::Json => print_json(&report)?,
                Format::Table => {
                    println!(
                        "job {id}: {} of {} External IDs reverted; {} left alone (run {})",
                        report.reverted,
                        report.changes,
                        report.kept.len(),
                        report.run
                    );
                    for kept in &report.kept {
                        println!(
                            "  {:<16} job wrote {:<28} now {:<28} ({})",
                            kept.user_id,
                            kept.job_value.as_deref().unwrap_or("∅"),
                            kept.current.as_deref().unwrap_or("∅"),
                            kept.reason
                        );
                    }
                }
            }
        }
        JobsCommand::Report { id, format } => match format {
            ReportFormat::Json => print_json(&super::report::json(app, id).await?)?,
            ReportFormat::Csv => print!("{}", super::report::csv(app, id).await?),
        },
        JobsCommand::Schedule { source, every } => {
            let minutes = match every.trim() {
                "off" | "none" => None,
                text => Some(text.parse::<u32>().map_err(|_| {
                    AppError::Input(format!(
                        "--every: '{text}' is not a number of minutes or `off`"
                    ))
                })?),
            };
            let schedule = super::set_schedule(app, &source, minutes, clock::now()).await?;
            match schedule.every_minutes {
                Some(m) => println!(
                    "source {source}: pulled every {m} minutes by `tether serve`; next at {}",
                    schedule
                        .next_run_at
                        .and_then(|t| t
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok())
                        .unwrap_or_default()
                ),
                None => println!("source {source}: no schedule"),
            }
        }
        JobsCommand::Run => {
            let owner = runner::owner_name("cli");
            while let Some(job) =
                runner::claim_and_run(app, None, &owner, clock::now, &runner::Quiet).await?
            {
                println!("job {} ({}): {}", job.pk, job.source, job.state);
            }
        }
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> AppResult<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| AppError::Io(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn print_job(job: &Job) {
    let report = job
        .report
        .as_ref()
        .and_then(|v| PullReport::deserialize(v).ok());
    println!(
        "job {} — source {}{}: {} (requested by {}, attempt {})",
        job.pk,
        job.source,
        if job.dry_run { ", dry run" } else { "" },
        job.state,
        job.requested_by,
        job.attempts
    );
    if let Some(error) = &job.error {
        println!("error: {error}");
    }
    let Some(report) = report else {
        let p = &job.progress;
        println!(
            "phase {}: {} pages, {} accounts fetched, {} users planned, {} of {} changes applied",
            p.phase.as_deref().unwrap_or("-"),
            p.pages,
            p.accounts_fetched,
            p.users_planned,
            p.changes_applied,
            p.changes_planned
        );
        return;
    };
    println!(
        "fetched {} accounts in {} pages{}; stored {} new, {} updated, {} unchanged; {} no longer seen",
        report.fetch.accounts,
        report.fetch.pages,
        if report.fetch.complete {
            " (complete)"
        } else {
            " (INCOMPLETE)"
        },
        report.store.inserted,
        report.store.updated,
        report.store.unchanged,
        report.store.unseen
    );
    for warning in &report.fetch.warnings {
        println!("warning: {warning}");
    }
    println!("{:<20} {:>10}", "SITUATION", "USERS");
    for (situation, count) in &report.summary {
        println!("{:<20} {:>10}", situation.as_str(), count);
    }
    if job.dry_run {
        println!(
            "{} External IDs would be written (dry run: nothing stored)",
            report.planned
        );
    } else if job.state == JobState::AwaitingApproval {
        println!(
            "held for approval: {} changes = {:.1}% of {} users, above the {}% threshold",
            report.planned,
            report.safeguard.share_percent,
            report.users,
            report.safeguard.threshold_percent
        );
        println!(
            "approve with `tether jobs approve {id}`, or reject with `tether jobs reject {id}`",
            id = job.pk
        );
    } else {
        println!(
            "{} of {} External IDs written; {} changed by someone else meanwhile (not overwritten)",
            report.applied,
            report.planned,
            report.conflicts.len()
        );
    }
    println!(
        "timings: fetch {} ms, store {} ms, plan {} ms, apply {} ms; total {} ms",
        report.timings.fetch_ms,
        report.timings.store_ms,
        report.timings.plan_ms,
        report.timings.apply_ms,
        report.duration_ms
    );
    if let Some(undone) = &job.undo_report {
        println!(
            "undone by {}: {}",
            job.undone_by.as_deref().unwrap_or("?"),
            undone
        );
    }
}
