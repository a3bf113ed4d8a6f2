//! Application functions: the one place each use case is written. The CLI (and later the
//! web UI, the API and jobs) parse input, call one of these, and render the result.
//!
//! This layer reads no clock (it takes `at`), prints nothing, and knows no SQL or HTTP.

pub mod admin;
pub mod oidc;
pub mod scim;
pub mod signin;

use crate::error::{AppError, AppResult};
use crate::files::{self, Format};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use tether_core::{
    explain, match_key, plan_links, AccountRow, AccountView, Context, Evidence, ExternalIdField,
    Origin, Outcome, Rules, Situation, UserView,
};
use tether_store::{
    AnyStore, ApplyBatch, ImportOptions, ImportSummary, NewRun, NewSource, NewToken, RunFinish,
    Source, Store, Timestamp, UserFilter, UserRecord,
};

/// How many changes (and as many outcomes) one transaction writes, by default.
pub const APPLY_BATCH: usize = 100_000;

/// How to run a reconcile.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileOptions {
    /// Overrides the source's External ID field (saved on the source by a real run).
    pub field: Option<ExternalIdField>,
    /// Plan only; write nothing.
    pub dry_run: bool,
    /// Changes per transaction.
    pub batch_size: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            field: None,
            dry_run: false,
            batch_size: APPLY_BATCH,
        }
    }
}

/// Reports progress of long work; the CLI draws a bar, tests and pipes draw nothing.
pub trait Progress: Sync {
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    fn advance(&self, _by: u64) {}
}

/// Draws nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

pub struct App {
    pub store: AnyStore,
    /// Seals source credentials at rest; `None` when the server has nowhere to keep a key.
    pub secret_key: Option<admin::SecretKey>,
    /// Who is acting, for the audit trail (e.g. `cli:alice`).
    pub actor: String,
}

/// What an import did, for the report.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub rows: u64,
    pub skipped: u64,
    #[serde(flatten)]
    pub summary: ImportSummary,
}

impl ImportReport {
    fn new<T>(path: &Path, parsed: &files::Parsed<T>, summary: ImportSummary) -> Self {
        ImportReport {
            file: path.display().to_string(),
            rows: parsed.rows.len() as u64,
            skipped: parsed.problem_count as u64,
            summary,
        }
    }
}

/// How to import a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportFileOptions {
    /// Import the valid rows and report the others, instead of refusing the file.
    pub skip_invalid: bool,
    /// Overwrite stored External IDs that differ from the file's (users only; audited).
    pub replace_external_ids: bool,
}

/// Parses an import file; any problem refuses it unless `skip_invalid`.
fn read_file<T>(
    path: &Path,
    skip_invalid: bool,
    read: fn(std::fs::File, Format) -> files::Parsed<T>,
    progress: &dyn Progress,
) -> AppResult<files::Parsed<T>> {
    let format = Format::of(path).map_err(AppError::Input)?;
    let file = open(path)?;
    progress.phase("reading file", None);
    let parsed = read(file, format);
    if parsed.problem_count > 0 && !skip_invalid {
        return Err(AppError::Input(format!(
            "{}\nnothing was imported; fix the file, or pass --skip-invalid to import the valid rows",
            parsed.report(path)
        )));
    }
    Ok(parsed)
}

/// The result of a reconcile run.
#[derive(Debug, Serialize)]
pub struct ReconcileReport {
    pub source: String,
    pub field: ExternalIdField,
    pub dry_run: bool,
    /// The run's key; `None` for a dry run, which records nothing.
    pub run: Option<i64>,
    pub users: u64,
    pub accounts: u64,
    /// Users per situation, as planned.
    pub summary: BTreeMap<Situation, u64>,
    /// External IDs the plan would write.
    pub planned: u64,
    /// External IDs written.
    pub applied: u64,
    /// Planned changes not written because the user or the value changed meanwhile.
    pub conflicts: Vec<RaceReport>,
    /// Stored outcomes rewritten.
    pub outcomes_written: u64,
    pub duration_ms: u64,
    /// Where the time went: reading, matching, writing (milliseconds).
    pub timings: Timings,
}

/// Milliseconds spent in each phase of a run.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub read_ms: u64,
    pub plan_ms: u64,
    pub write_ms: u64,
}

/// A planned change that lost a race with another writer.
#[derive(Debug, Serialize)]
pub struct RaceReport {
    pub user_pk: i64,
    pub planned: String,
    pub result: String,
}

/// One user's situation, explained.
#[derive(Debug, Serialize)]
pub struct Diagnosis {
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub external_id_origin: Option<Origin>,
    pub situation: Situation,
    pub explanation: String,
    pub fix: String,
    pub source: String,
    pub field: ExternalIdField,
    pub evidence: EvidenceView,
}

#[derive(Debug, Serialize)]
pub struct EvidenceView {
    pub accounts: Vec<AccountView>,
    pub users: Vec<UserView>,
    pub total: u32,
}

/// Which users to diagnose.
pub enum Who<'a> {
    One(&'a str),
    All,
}

impl App {
    pub fn new(store: AnyStore, actor: String) -> Self {
        App {
            store,
            actor,
            secret_key: None,
        }
    }

    pub async fn add_source(&self, source: NewSource, at: Timestamp) -> AppResult<Source> {
        if source.name.trim().is_empty() || source.name.trim() != source.name {
            return Err(AppError::Input(format!(
                "source name '{}' must be non-empty without surrounding spaces",
                source.name
            )));
        }
        Ok(self.store.insert_source(&source, at).await?)
    }

    /// The source named `name`, or — when `name` is `None` and exactly one source exists — that one.
    pub async fn source(&self, name: Option<&str>) -> AppResult<Source> {
        if let Some(name) = name {
            return match self.store.find_source(name).await? {
                Some(source) => Ok(source),
                None => Err(AppError::NotFound(self.unknown_source_message(name).await?)),
            };
        }
        let mut sources = self.store.list_sources().await?;
        match sources.len() {
            1 => Ok(sources.remove(0)),
            0 => Err(AppError::NotFound(
                "no source exists yet; add one with `tether sources add NAME`".to_owned(),
            )),
            _ => Err(AppError::Input(format!(
                "several sources exist ({}); name one with --source",
                sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn unknown_source_message(&self, name: &str) -> AppResult<String> {
        let names: Vec<String> = self
            .store
            .list_sources()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        Ok(if names.is_empty() {
            format!("unknown source '{name}': no source exists yet; add it with `tether sources add {name}`")
        } else {
            format!(
                "unknown source '{name}'; known sources: {}",
                names.join(", ")
            )
        })
    }

    /// Imports users from a file. With `skip_invalid` false, one bad row refuses the file.
    pub async fn import_users(
        &self,
        path: &Path,
        options: ImportFileOptions,
        at: Timestamp,
        progress: &dyn Progress,
    ) -> AppResult<ImportReport> {
        let parsed = read_file(path, options.skip_invalid, files::read_users, progress)?;
        progress.phase("writing users", None);
        let store_options = ImportOptions {
            actor: &self.actor,
            at,
            replace_external_ids: options.replace_external_ids,
        };
        let summary = self
            .store
            .import_users(&parsed.rows, &store_options)
            .await?;
        Ok(ImportReport::new(path, &parsed, summary))
    }

    /// Imports one source's accounts from a file, all or nothing unless `skip_invalid`.
    pub async fn import_accounts(
        &self,
        path: &Path,
        source: &str,
        options: ImportFileOptions,
        at: Timestamp,
        progress: &dyn Progress,
    ) -> AppResult<ImportReport> {
        let source = self.source(Some(source)).await?;
        let parsed = read_file(path, options.skip_invalid, files::read_accounts, progress)?;
        progress.phase("writing accounts", None);
        let summary = self
            .store
            .import_accounts(source.pk, &parsed.rows, at)
            .await?;
        Ok(ImportReport::new(path, &parsed, summary))
    }

    /// Plans one source and, unless `dry_run`, applies the plan in batches (DESIGN §2 Plan).
    ///
    /// `field` overrides the source's External ID field; on a real run it is saved as the
    /// source's field, as choosing it in the Pull User Data dropdown would.
    pub async fn reconcile(
        &self,
        source: &str,
        options: ReconcileOptions,
        at: Timestamp,
        progress: &dyn Progress,
    ) -> AppResult<ReconcileReport> {
        self.reconcile_as(&self.actor, source, options, at, progress)
            .await
    }

    /// [`App::reconcile`] on behalf of `actor` (the admin in the UI, a job, a token).
    pub async fn reconcile_as(
        &self,
        actor: &str,
        source: &str,
        options: ReconcileOptions,
        at: Timestamp,
        progress: &dyn Progress,
    ) -> AppResult<ReconcileReport> {
        let ReconcileOptions {
            field,
            dry_run,
            batch_size,
        } = options;
        let batch_size = batch_size.max(1);
        let watch = crate::clock::Stopwatch::start();
        let source = self.source(Some(source)).await?;
        let field = field.unwrap_or(source.external_id_field);
        progress.phase("reading users and accounts", None);
        let input = self.store.load_plan_input(source.pk, field).await?;
        let read_ms = watch.elapsed_ms();
        progress.phase("matching", None);
        let rules = Rules {
            field,
            link_inactive: source.link_inactive,
        };
        let plan = plan_links(&input.users, &input.accounts, &rules);
        let summary = plan.summary();
        let mut report = ReconcileReport {
            source: source.name.clone(),
            field,
            dry_run,
            run: None,
            users: input.users.len() as u64,
            accounts: input.accounts.len() as u64,
            summary,
            planned: plan.changes.len() as u64,
            applied: 0,
            conflicts: Vec::new(),
            outcomes_written: 0,
            duration_ms: 0,
            timings: Timings {
                read_ms,
                plan_ms: 0,
                write_ms: 0,
            },
        };
        report.timings.plan_ms = watch.elapsed_ms() - read_ms;
        if dry_run {
            report.duration_ms = watch.elapsed_ms();
            return Ok(report);
        }
        if field != source.external_id_field {
            self.store.update_source_field(source.pk, field).await?;
        }

        // Outcomes as they will stand after the run: a new link is stored as linked, so the
        // next run finds nothing to rewrite. Only outcomes that differ are written.
        let stored_after = |outcome: &Outcome| match outcome.situation {
            Situation::NewLink => Situation::Linked,
            other => other,
        };
        let mut diffs: Vec<Outcome> = Vec::new();
        for (outcome, stored) in plan.outcomes.iter().zip(&input.stored) {
            let situation = stored_after(outcome);
            let evidence = outcome.evidence.encode();
            let same = stored
                .as_ref()
                .is_some_and(|s| s.situation == situation && s.evidence == evidence);
            if !same && outcome.situation != Situation::NewLink {
                diffs.push(Outcome {
                    situation,
                    ..outcome.clone()
                });
            }
        }

        let run_pk = self
            .store
            .insert_run(&NewRun {
                source_pk: source.pk,
                kind: "reconcile".to_owned(),
                dry_run: false,
                external_id_field: field,
                actor: actor.to_owned(),
                started_at: at,
            })
            .await?;
        report.run = Some(run_pk);

        let batches = plan.changes.len().max(diffs.len()).div_ceil(batch_size);
        progress.phase(
            "writing links",
            Some(plan.changes.len() as u64 + diffs.len() as u64),
        );
        let mut result = Ok(());
        for n in 0..batches {
            let changes = chunk(&plan.changes, n, batch_size);
            let outcomes = chunk(&diffs, n, batch_size);
            let batch = ApplyBatch {
                source_pk: source.pk,
                run_pk,
                origin: Origin::Pull,
                actor,
                at,
                changes,
                outcomes,
            };
            match self.store.apply_batch(&batch).await {
                Ok(results) => {
                    for (change, outcome) in changes.iter().zip(results) {
                        match outcome {
                            tether_core::ChangeResult::Applied => report.applied += 1,
                            tether_core::ChangeResult::AlreadySet => {}
                            other => report.conflicts.push(RaceReport {
                                user_pk: change.user_pk,
                                planned: change.new.clone(),
                                result: format!("{other:?}"),
                            }),
                        }
                    }
                    report.outcomes_written += (changes.len() + outcomes.len()) as u64;
                    progress.advance((changes.len() + outcomes.len()) as u64);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        report.duration_ms = watch.elapsed_ms();
        report.timings.write_ms = report.duration_ms - read_ms - report.timings.plan_ms;
        let finish = RunFinish {
            finished_at: at,
            state: if result.is_ok() {
                "succeeded"
            } else {
                "failed"
            }
            .to_owned(),
            summary: serde_json::json!({
                "summary": report.summary,
                "planned": report.planned,
                "conflicts": report.conflicts.len(),
                "users": report.users,
                "accounts": report.accounts,
                "duration_ms": report.duration_ms,
                "timings": report.timings,
            }),
            applied: report.applied,
        };
        self.store.finish_run(run_pk, &finish).await?;
        result?;
        Ok(report)
    }

    /// Explains where users stand against a source, from a fresh plan over the stored data.
    pub async fn diagnose(&self, who: Who<'_>, source: Option<&str>) -> AppResult<Vec<Diagnosis>> {
        let source = self.source(source).await?;
        let selected: Option<Vec<UserRecord>> = match who {
            Who::One(ident) => {
                let key = match_key(Some(ident));
                let found = self.store.find_users(ident, key.key()).await?;
                if found.is_empty() {
                    return Err(AppError::NotFound(format!(
                        "no user has the id, username or e-mail '{ident}'"
                    )));
                }
                Some(found)
            }
            Who::All => None,
        };
        let rules = Rules {
            field: source.external_id_field,
            link_inactive: source.link_inactive,
        };
        // For one user, plan over the lean input and fetch only the evidence's accounts in
        // full; for everyone, read every account column once.
        let input = match selected {
            Some(_) => self.store.load_plan_input(source.pk, rules.field).await?,
            None => self.store.load_link_input(source.pk).await?,
        };
        let plan = plan_links(&input.users, &input.accounts, &rules);
        let outcomes: BTreeMap<i64, &Outcome> =
            plan.outcomes.iter().map(|o| (o.user_pk, o)).collect();
        let fetched: Vec<AccountRow> = match &selected {
            Some(users) => {
                let pks: Vec<i64> = users
                    .iter()
                    .filter_map(|u| outcomes.get(&u.pk))
                    .flat_map(|o| o.evidence.accounts.iter().copied())
                    .collect();
                self.store
                    .get_accounts_by_pk(&pks)
                    .await?
                    .into_iter()
                    .map(account_row)
                    .collect()
            }
            None => Vec::new(),
        };
        let accounts: BTreeMap<i64, &AccountRow> = match selected {
            Some(_) => fetched.iter(),
            None => input.accounts.iter(),
        }
        .map(|a| (a.pk, a))
        .collect();

        let users: Vec<UserRecord> = match selected {
            Some(users) => users,
            None => self.all_users().await?,
        };
        let mut diagnoses = Vec::with_capacity(users.len());
        for user in users {
            let Some(outcome) = outcomes.get(&user.pk) else {
                continue;
            };
            let related = if outcome.evidence.users.is_empty() {
                Vec::new()
            } else {
                self.store.get_users_by_pk(&outcome.evidence.users).await?
            };
            diagnoses.push(render(&user, outcome, &accounts, &related, &source));
        }
        Ok(diagnoses)
    }

    async fn all_users(&self) -> AppResult<Vec<UserRecord>> {
        let mut users = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_users(&UserFilter {
                    after_pk: after,
                    limit: 10_000,
                    situation: None,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.pk);
            users.extend(page);
        }
        Ok(users)
    }

    /// Audit entries (newest first), for one user or all, each with the user's id.
    pub async fn audit(
        &self,
        user: Option<&str>,
        limit: u32,
    ) -> AppResult<Vec<(tether_store::AuditEntry, String)>> {
        let user_pk = match user {
            None => None,
            Some(ident) => {
                let found = self
                    .store
                    .find_users(ident, match_key(Some(ident)).key())
                    .await?;
                match found.as_slice() {
                    [one] => Some(one.pk),
                    [] => {
                        return Err(AppError::NotFound(format!(
                            "no user has the id, username or e-mail '{ident}'"
                        )))
                    }
                    many => {
                        return Err(AppError::Input(format!(
                            "'{ident}' names {} users ({}); give an id",
                            many.len(),
                            many.iter()
                                .map(|u| u.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )))
                    }
                }
            }
        };
        let entries = self.store.list_audit(user_pk, limit).await?;
        let mut pks: Vec<i64> = entries.iter().map(|e| e.user_pk).collect();
        pks.sort_unstable();
        pks.dedup();
        let ids: BTreeMap<i64, String> = self
            .store
            .get_users_by_pk(&pks)
            .await?
            .into_iter()
            .map(|u| (u.pk, u.id))
            .collect();
        Ok(entries
            .into_iter()
            .map(|e| {
                let id = ids.get(&e.user_pk).cloned().unwrap_or_default();
                (e, id)
            })
            .collect())
    }

    /// One page of users, optionally in one situation (as stored by the last run).
    pub async fn list_users(&self, filter: &UserFilter) -> AppResult<Vec<UserRecord>> {
        Ok(self.store.list_users(filter).await?)
    }

    /// Creates a bearer token and returns it; only its hash is stored.
    pub async fn create_token(
        &self,
        name: &str,
        scope: &str,
        secret: [u8; 32],
        at: Timestamp,
    ) -> AppResult<String> {
        if name.trim().is_empty() {
            return Err(AppError::Input("token name must not be empty".to_owned()));
        }
        let token = format!("tether_{}", hex::encode(secret));
        let hash = token_hash(&token);
        self.store
            .insert_token(&NewToken {
                name: name.to_owned(),
                scope: scope.to_owned(),
                hash,
                created_at: at,
            })
            .await?;
        Ok(token)
    }
}

/// The stored form of a bearer token: hex SHA-256. Tokens carry 256 random bits, so a fast
/// hash is enough (a password hash would only slow every API call).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn chunk<T>(items: &[T], n: usize, size: usize) -> &[T] {
    let start = (n * size).min(items.len());
    let end = ((n + 1) * size).min(items.len());
    &items[start..end]
}

fn open(path: &Path) -> AppResult<std::fs::File> {
    std::fs::File::open(path).map_err(|e| AppError::Input(format!("{}: {e}", path.display())))
}

fn user_view(user: &UserRecord) -> UserView {
    UserView {
        id: user.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        external_id: user.external_id.clone(),
    }
}

fn account_row(account: tether_store::AccountRecord) -> AccountRow {
    AccountRow {
        pk: account.pk,
        account_id: account.account_id,
        username: account.username,
        key: account.key,
        email: account.email,
        email_key: account.email_key,
        active: account.active,
        account_type: account.account_type,
    }
}

fn account_view(account: &AccountRow, field: ExternalIdField) -> AccountView {
    AccountView {
        account_id: account.account_id.clone(),
        email: account.email.clone(),
        active: account.active,
        account_type: account.account_type,
        value: account.value(field).map(str::to_owned),
    }
}

fn render(
    user: &UserRecord,
    outcome: &Outcome,
    accounts: &BTreeMap<i64, &AccountRow>,
    related: &[UserRecord],
    source: &Source,
) -> Diagnosis {
    let field = source.external_id_field;
    let Evidence {
        accounts: account_pks,
        total,
        ..
    } = &outcome.evidence;
    let account_views: Vec<AccountView> = account_pks
        .iter()
        .filter_map(|pk| accounts.get(pk))
        .map(|a| account_view(a, field))
        .collect();
    let user_views: Vec<UserView> = related.iter().map(user_view).collect();
    let me = user_view(user);
    let text = explain(&Context {
        situation: outcome.situation,
        user: &me,
        accounts: &account_views,
        users: &user_views,
        total: *total,
        field,
        source: &source.name,
    });
    Diagnosis {
        user_id: user.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        external_id: user.external_id.clone(),
        external_id_origin: user.external_id_origin,
        situation: outcome.situation,
        explanation: text.explanation,
        fix: text.fix,
        source: source.name.clone(),
        field,
        evidence: EvidenceView {
            accounts: account_views,
            users: user_views,
            total: *total,
        },
    }
}
