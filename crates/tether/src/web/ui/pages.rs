//! The admin screens, in the order of the admin's path (DESIGN §1): dashboard, users and a
//! user's page, Settings › Security, Sources › Pull User Data, audit log, API tokens.
//! Each handler parses input, calls one application function, and renders.

use super::layout::{csrf_field, notice, page, situation_badge, when, Nav};
use crate::app::admin::Dashboard;
use crate::app::oidc::SecretChange;
use crate::app::{ReconcileOptions, ReconcileReport};
use crate::clock;
use crate::error::AppError;
use crate::oidc::config::{list, variable, words, FieldOrigin, OidcFields};
use crate::web::auth::{check_csrf, urlencode, AdminPage};
use crate::web::oidc::{OidcRuntime, OidcStatus};
use crate::web::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use tether_core::{ExternalIdField, Origin, Situation};
use tether_sources::{SourceSettings, KINDS};
use tether_store::admin::{AuditFilter, Session, Settings, UserSearch};
use tether_store::{NewSource, Source, UserFilter};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/users", get(users))
        .route("/users/{id}", get(user_page))
        .route("/users/{id}/external-id", post(edit_external_id))
        .route("/users/{id}/exclude", post(exclude))
        .route("/settings/security", get(settings_page).post(save_settings))
        .route("/settings/security/oidc", post(save_oidc_settings))
        .route("/sources", get(sources).post(add_source))
        .route("/sources/{name}", get(source_page).post(edit_source))
        .route("/sources/{name}/pull", post(pull))
        .route("/audit", get(audit))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{pk}/revoke", post(revoke_token))
}

const PAGE_SIZE: u32 = 50;

fn render(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// An error as a page with the navigation (the API has JSON for the same errors).
fn error_page(session: &Session, err: AppError) -> Response {
    let api = crate::web::error::ApiError::from(err);
    let status = api.status;
    (
        status,
        Html(
            page(
                "Something went wrong",
                Nav::None,
                session,
                notice("error", &api.message),
            )
            .into_string(),
        ),
    )
        .into_response()
}

fn csrf_refused(session: &Session) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            page(
                "Form refused",
                Nav::None,
                session,
                notice(
                    "error",
                    "The form's CSRF token is missing or stale: reload the page and try again.",
                ),
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// The source a page is about: `?source=NAME`, else the first one.
async fn pick_source(state: &AppState, name: Option<&str>) -> Result<Option<Source>, AppError> {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => state.app.source(Some(name)).await.map(Some),
        None => {
            use tether_store::Store;
            Ok(state.app.store.list_sources().await?.into_iter().next())
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "Yes"
    } else {
        "No"
    }
}

// --- dashboard -------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct SourceQuery {
    source: Option<String>,
}

async fn dashboard(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Query(query): Query<SourceQuery>,
) -> Response {
    let result = async {
        let source = pick_source(&state, query.source.as_deref()).await?;
        state.app.dashboard(source.as_ref()).await
    }
    .await;
    let board = match result {
        Ok(board) => board,
        Err(e) => return error_page(&session, e),
    };
    let body = html! {
        @match &board.source {
            None => {
                (notice("info", "No source yet. Add one under Sources › Pull User Data, or import accounts with the CLI."))
            }
            Some(source) => {
                p.muted {
                    (board.users) " users · source " a href={"/sources/" (urlencode(&source.name))} { (source.name) }
                    " · External ID field " code { (source.external_id_field.as_str()) }
                    @if let Some(run) = &board.last_run {
                        " · last run " (when(&run.started_at)) " (" (run.kind) ", " (run.state) ")"
                    }
                }
                h2 { "Users per situation" }
                @if board.situations.is_empty() {
                    p { "No run yet: open " a href={"/sources/" (urlencode(&source.name))} { "Pull User Data" } " and run it." }
                }
                div.grid #situations {
                    @for (name, n) in &board.situations {
                        a.tile href={"/users?situation=" (name)} {
                            div.n { (n) }
                            (situation_badge(name))
                        }
                    }
                }
                h2 { "Linked share over time" }
                (chart(&board))
            }
        }
    };
    render(page("Dashboard", Nav::Dashboard, &session, body))
}

/// The linked share after each applied run, as an inline SVG line chart.
fn chart(board: &Dashboard) -> Markup {
    let (w, h, left, bottom, top) = (800.0_f64, 220.0_f64, 46.0_f64, 30.0_f64, 14.0_f64);
    let points: Vec<(f64, f64)> = board
        .history
        .iter()
        .map(|p| {
            if p.total == 0 {
                0.0
            } else {
                p.linked as f64 / p.total as f64
            }
        })
        .enumerate()
        .map(|(i, share)| (i as f64, share))
        .collect();
    let n = points.len().max(2) as f64 - 1.0;
    let x = |i: f64| left + (w - left - 16.0) * (i / n);
    let y = |share: f64| top + (h - top - bottom) * (1.0 - share);
    let path: String = points
        .iter()
        .map(|(i, s)| format!("{:.1},{:.1}", x(*i), y(*s)))
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg.chart viewBox={"0 0 " (w) " " (h)} role="img" aria-label="Linked share of users after each run" {
            @for pct in [0, 25, 50, 75, 100] {
                line.grid-line x1=(left) x2=(w - 16.0) y1=(y(pct as f64 / 100.0)) y2=(y(pct as f64 / 100.0)) {}
                text x="4" y=(y(pct as f64 / 100.0) + 4.0) { (pct) "%" }
            }
            @if points.len() == 1 {
                circle.dot cx=(x(0.0)) cy=(y(points[0].1)) r="4" {}
            } @else if !points.is_empty() {
                polyline.line points=(path) {}
                @for (i, s) in &points { circle.dot cx=(x(*i)) cy=(y(*s)) r="3" {} }
            }
            @if let (Some(first), Some(last)) = (board.history.first(), board.history.last()) {
                text x=(left) y=(h - 8.0) { (when(&first.at)) }
                text x=(w - 200.0) y=(h - 8.0) { (when(&last.at)) " · " (last.linked) "/" (last.total) " linked" }
            }
            @if points.is_empty() { text x=(left + 10.0) y=(h / 2.0) { "No applied run yet." } }
        }
    }
}

// --- users -----------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct UsersQuery {
    situation: Option<String>,
    q: Option<String>,
    after: Option<i64>,
    source: Option<String>,
}

async fn users(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Query(query): Query<UsersQuery>,
) -> Response {
    let situation = match query.situation.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => match name.parse::<Situation>() {
            Ok(s) => Some(s),
            Err(e) => return error_page(&session, AppError::Input(e.to_string())),
        },
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let result = async {
        let source = pick_source(&state, query.source.as_deref()).await?;
        let rows = if let Some(q) = search {
            state
                .app
                .search_users(&UserSearch {
                    query: q.to_owned(),
                    after_pk: query.after,
                    limit: PAGE_SIZE,
                })
                .await?
        } else {
            let situation = match (situation, &source) {
                (Some(s), Some(source)) => Some((source.pk, s)),
                (Some(_), None) => {
                    return Err(AppError::Input(
                        "a situation filter needs a source; add one first".to_owned(),
                    ))
                }
                (None, _) => None,
            };
            state
                .app
                .list_users(&UserFilter {
                    after_pk: query.after,
                    limit: PAGE_SIZE,
                    situation,
                })
                .await?
        };
        Ok::<_, AppError>((source, rows))
    }
    .await;
    let (source, rows) = match result {
        Ok(r) => r,
        Err(e) => return error_page(&session, e),
    };
    let next = (rows.len() as u32 == PAGE_SIZE)
        .then(|| rows.last().map(|u| u.pk))
        .flatten();
    let mut next_link = String::from("/users?");
    if let Some(s) = situation {
        next_link.push_str(&format!("situation={}&", s.as_str()));
    }
    if let Some(q) = search {
        next_link.push_str(&format!("q={}&", urlencode(q)));
    }
    let body = html! {
        form.row method="get" action="/users" #user-filter {
            div {
                label for="situation" { "Situation" } br;
                select #situation name="situation" {
                    option value="" { "All users" }
                    @for s in Situation::ALL {
                        option value=(s.as_str()) selected[Some(*s) == situation] { (s.as_str()) }
                    }
                }
            }
            div {
                label for="q" { "Search name or e-mail" } br;
                input #q type="search" name="q" value=(search.unwrap_or("")) placeholder="alice, alice@example.com, u00042";
            }
            div { button type="submit" { "Filter" } }
        }
        @if search.is_some() && situation.is_some() {
            p.muted { "Search ignores the situation filter." }
        }
        @if let (Some(s), Some(src)) = (situation, &source) {
            p.muted { "Users in " (situation_badge(s.as_str())) " at the last run of " (src.name) "." }
        }
        table #users {
            thead { tr { th { "ID" } th { "Username" } th { "E-mail" } th { "Name" } th { "External ID" } th { "Set by" } th { "Active" } } }
            tbody {
                @for u in &rows {
                    tr {
                        td { a href={"/users/" (urlencode(&u.id))} { (u.id) } }
                        td { (u.username) }
                        td { (u.email.as_deref().unwrap_or("")) }
                        td { (u.display_name) }
                        td.mono { (u.external_id.as_deref().unwrap_or("—")) }
                        td { (u.external_id_origin.map(|o| o.as_str()).unwrap_or("")) }
                        td { (yes_no(u.active)) @if u.excluded { " · excluded" } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" { "No users match." } } }
            }
        }
        div.pager {
            @if query.after.is_some() { a.button.secondary href=(next_link.trim_end_matches('&').trim_end_matches('?')) { "← First page" } }
            @if let Some(after) = next { a.button.secondary href={(next_link) "after=" (after)} { "Next page →" } }
        }
    };
    render(page("Users", Nav::Users, &session, body))
}

#[derive(Deserialize, Default)]
struct UserQuery {
    source: Option<String>,
    done: Option<String>,
}

async fn user_page(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(id): Path<String>,
    Query(query): Query<UserQuery>,
) -> Response {
    let message = match query.done.as_deref() {
        Some("set") => Some(("ok", "External ID set.")),
        Some("cleared") => Some(("ok", "External ID cleared.")),
        Some("excluded") => Some(("ok", "User excluded: runs will not change this user.")),
        Some("included") => Some(("ok", "User included again.")),
        _ => None,
    };
    user_view(
        &state,
        &session,
        &id,
        query.source.as_deref(),
        message,
        StatusCode::OK,
    )
    .await
}

async fn user_view(
    state: &AppState,
    session: &Session,
    id: &str,
    source: Option<&str>,
    message: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let result = async {
        let source = pick_source(state, source).await?;
        let detail = state.app.user_detail(id, source.as_ref()).await?;
        Ok::<_, AppError>((source, detail))
    }
    .await;
    let (source, u) = match result {
        Ok(r) => r,
        Err(e) => return error_page(session, e),
    };
    let action = format!("/users/{}", urlencode(&u.id));
    let body = html! {
        @if let Some((kind, text)) = message { (notice(kind, text)) }
        section.card {
            dl.facts {
                dt { "ID" } dd { (u.id) }
                dt { "Username" } dd { (u.username) }
                dt { "E-mail" } dd { (u.email.as_deref().unwrap_or("—")) }
                dt { "Active" } dd { (yes_no(u.active)) }
                dt { "External ID" } dd.mono #external-id { (u.external_id.as_deref().unwrap_or("—")) }
                dt { "Set by" } dd {
                    (u.external_id_origin.map(|o| o.as_str()).unwrap_or("—"))
                    @if let Some(at) = &u.external_id_set_at { " at " (when(at)) }
                }
                dt { "Excluded" } dd { (yes_no(u.excluded)) }
            }
        }
        section.card #diagnosis {
            @match (&u.diagnosis, &source) {
                (Some(d), _) => {
                    p { "Situation against " (d.source) " (External ID field " code { (d.field.as_str()) } "): " span.situation { (situation_badge(d.situation.as_str())) } }
                    p.explanation { (d.explanation) }
                    p.fix { strong { "Fix: " } (d.fix) }
                    @if !d.evidence.accounts.is_empty() || !d.evidence.users.is_empty() {
                        h2 { "Evidence" }
                        table #evidence {
                            thead { tr { th { "Record" } th { "ID" } th { "E-mail" } th { "Field value" } th { "Active / type" } } }
                            tbody {
                                @for a in &d.evidence.accounts {
                                    tr { td { "account" } td.mono { (a.account_id) } td { (a.email.as_deref().unwrap_or("(hidden)")) } td.mono { (a.value.as_deref().unwrap_or("—")) } td { (yes_no(a.active)) " · " (a.account_type.as_str()) } }
                                }
                                @for v in &d.evidence.users {
                                    tr { td { "user" } td { a href={"/users/" (urlencode(&v.id))} { (v.id) } } td { (v.email.as_deref().unwrap_or("")) } td.mono { (v.external_id.as_deref().unwrap_or("—")) } td { "" } }
                                }
                            }
                        }
                        @if d.evidence.total as usize > d.evidence.accounts.len() + d.evidence.users.len() {
                            p.muted { (d.evidence.total) " records in all; the first ones are shown." }
                        }
                    }
                }
                (None, Some(s)) => { p.explanation { "Not planned since its last change: the next run of " (s.name) " plans this user again." } }
                (None, None) => { p.explanation { "No source yet, so no situation." } }
            }
        }
        section.card {
            h2 { "Change External ID by hand" }
            p.muted { "The same rules as every run: a value another user holds is refused, and the change is audited with origin manual." }
            form.stack #set-external-id method="post" action={(action) "/external-id"} {
                (csrf_field(session))
                input type="hidden" name="op" value="set";
                input type="hidden" name="expected" value=(u.external_id.as_deref().unwrap_or(""));
                label for="external_id" { "External ID" }
                input #external_id type="text" name="external_id" required maxlength="255" placeholder="557058:…";
                label for="reason" { "Reason" span.hint { " (kept in the audit log)" } }
                input #reason type="text" name="reason" required maxlength="500";
                p { button type="submit" { "Set External ID" } }
            }
            @if u.external_id.is_some() {
                form.stack #clear-external-id method="post" action={(action) "/external-id"} data-confirm="Clear this user's External ID?" {
                    (csrf_field(session))
                    input type="hidden" name="op" value="clear";
                    input type="hidden" name="expected" value=(u.external_id.as_deref().unwrap_or(""));
                    label for="clear-reason" { "Reason for clearing" }
                    input #clear-reason type="text" name="reason" required maxlength="500";
                    p { button.danger type="submit" { "Clear External ID" } }
                }
            }
            h2 { (if u.excluded { "Included again?" } else { "Exclude from linking" }) }
            p.muted { "Excluded users are never changed by pulls, sign-ins or SCIM linking." }
            form.stack #exclude method="post" action={(action) "/exclude"} {
                (csrf_field(session))
                input type="hidden" name="excluded" value=(if u.excluded { "no" } else { "yes" });
                label for="exclude-reason" { "Reason" }
                input #exclude-reason type="text" name="reason" maxlength="500";
                p { button.secondary type="submit" { (if u.excluded { "Include this user again" } else { "Exclude from linking" }) } }
            }
        }
        h2 { "Audit" }
        table #audit {
            thead { tr { th { "When" } th { "Origin" } th { "Actor" } th { "Old" } th { "New" } th { "Reason" } } }
            tbody {
                @for e in &u.audit {
                    tr { td { (when(&e.at)) } td.origin { (e.origin.as_str()) } td { (e.actor) } td.mono { (e.old_value.as_deref().unwrap_or("∅")) } td.mono { (e.new_value.as_deref().unwrap_or("∅")) } td { (e.reason) } }
                }
                @if u.audit.is_empty() { tr { td colspan="6" { "No External ID change recorded." } } }
            }
        }
    };
    let title = if u.display_name.is_empty() {
        u.id.clone()
    } else {
        format!("{} ({})", u.display_name, u.id)
    };
    (
        status,
        Html(page(&title, Nav::Users, session, body).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ExternalIdForm {
    #[serde(default)]
    csrf: String,
    op: String,
    #[serde(default)]
    expected: String,
    #[serde(default)]
    external_id: String,
    #[serde(default)]
    reason: String,
}

async fn edit_external_id(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(id): Path<String>,
    Form(form): Form<ExternalIdForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let expected = Some(form.expected.as_str()).filter(|e| !e.is_empty());
    let (new, done) = match form.op.as_str() {
        "set" => (Some(form.external_id.as_str()), "set"),
        "clear" => (None, "cleared"),
        other => {
            return error_page(
                &session,
                AppError::Input(format!("op must be set or clear, not '{other}'")),
            )
        }
    };
    match state
        .app
        .edit_external_id(
            &id,
            expected,
            new,
            &form.reason,
            &session.principal,
            clock::now(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/users/{}?done={done}", urlencode(&id))).into_response(),
        Err(e @ (AppError::Input(_) | AppError::Conflict(_))) => {
            let status = if matches!(e, AppError::Conflict(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            let text = e.to_string();
            user_view(&state, &session, &id, None, Some(("error", &text)), status).await
        }
        Err(e) => error_page(&session, e),
    }
}

#[derive(Deserialize)]
struct ExcludeForm {
    #[serde(default)]
    csrf: String,
    excluded: String,
    #[serde(default)]
    reason: String,
}

async fn exclude(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(id): Path<String>,
    Form(form): Form<ExcludeForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let excluded = form.excluded == "yes";
    match state
        .app
        .set_excluded(
            &id,
            excluded,
            &form.reason,
            &session.principal,
            clock::now(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/users/{}?done={}",
            urlencode(&id),
            if excluded { "excluded" } else { "included" }
        ))
        .into_response(),
        Err(e) => error_page(&session, e),
    }
}

// --- settings --------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

async fn settings_page(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Query(query): Query<DoneQuery>,
) -> Response {
    match state.app.settings().await {
        Ok(settings) => {
            let message = match query.done.as_deref() {
                Some("saved") => Some(("ok", "Settings saved.")),
                Some("oidc") => Some(("ok", "Sign-in settings saved.")),
                _ => None,
            };
            let oidc = oidc_section(&state, &session, None).await;
            settings_view(&session, &settings, message, StatusCode::OK, oidc)
        }
        Err(e) => error_page(&session, e),
    }
}

fn yes_no_select(name: &str, label: &str, hint: &str, value: bool) -> Markup {
    html! {
        label for=(name) { (label) br; span.hint { (hint) } }
        select id=(name) name=(name) {
            option value="yes" selected[value] { "Yes" }
            option value="no" selected[!value] { "No" }
        }
    }
}

fn settings_view(
    session: &Session,
    s: &Settings,
    message: Option<(&str, &str)>,
    status: StatusCode,
    oidc: Markup,
) -> Response {
    let body = html! {
        @if let Some((kind, text)) = message { (notice(kind, text)) }
        section.card {
            form.stack #security-settings method="post" action="/settings/security" {
                (csrf_field(session))
                (yes_no_select("auto_populate", "Auto-populate account ID", "With Yes, a user who signs in through the identity platform gets the account ID written into External ID, when exactly one profile without External ID has the same verified e-mail.", s.auto_populate))
                (yes_no_select("require_verified_email", "Require a verified e-mail for sign-in linking", "Link at sign-in only when the platform says the e-mail is verified (email_verified). Turn off only if the platform never sends it.", s.require_verified_email))
                (yes_no_select("link_inactive", "Link inactive accounts", "Pull jobs may link users to deactivated directory accounts.", s.link_inactive))
                label for="mass_change_threshold_percent" { "Mass-change threshold (%)" br; span.hint { "A pull that would change more than this share of users waits for an administrator's approval." } }
                input #mass_change_threshold_percent type="number" name="mass_change_threshold_percent" min="1" max="100" value=(s.mass_change_threshold_percent) required;
                p { button type="submit" { "Save" } }
            }
        }
        (oidc)
    };
    (
        status,
        Html(page("Settings › Security", Nav::Settings, session, body).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    csrf: String,
    auto_populate: String,
    require_verified_email: String,
    link_inactive: String,
    mass_change_threshold_percent: String,
}

fn parse_yes_no(field: &str, value: &str) -> Result<bool, AppError> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(AppError::Input(format!(
            "{field} must be yes or no, not '{other}'"
        ))),
    }
}

async fn save_settings(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Form(form): Form<SettingsForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let parsed = (|| {
        Ok::<_, AppError>(Settings {
            auto_populate: parse_yes_no("auto_populate", &form.auto_populate)?,
            require_verified_email: parse_yes_no(
                "require_verified_email",
                &form.require_verified_email,
            )?,
            link_inactive: parse_yes_no("link_inactive", &form.link_inactive)?,
            mass_change_threshold_percent: form
                .mass_change_threshold_percent
                .trim()
                .parse()
                .map_err(|_| {
                    AppError::Input(
                        "mass_change_threshold_percent must be a whole number from 1 to 100"
                            .to_owned(),
                    )
                })?,
        })
    })();
    let result = match parsed {
        Ok(settings) => {
            state
                .app
                .update_settings(&settings, &session.principal, clock::now())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/settings/security?done=saved").into_response(),
        Err(e @ AppError::Input(_)) => {
            let current = state.app.settings().await.unwrap_or_default();
            let oidc = oidc_section(&state, &session, None).await;
            settings_view(
                &session,
                &current,
                Some(("error", &e.to_string())),
                StatusCode::BAD_REQUEST,
                oidc,
            )
        }
        Err(e) => error_page(&session, e),
    }
}

/// Settings › Security, single sign-on: the OpenID Connect settings, where each comes from,
/// and whether sign-in works now (a discovery of the provider). `submitted` refills the form
/// after a refused save.
async fn oidc_section(
    state: &AppState,
    session: &Session,
    submitted: Option<&OidcFields>,
) -> Markup {
    let runtime = &state.oidc;
    let default_redirect = OidcRuntime::default_redirect(state);
    let fixed = match runtime.fixed() {
        Ok(fixed) => fixed.clone(),
        Err(e) => {
            return html! {
                section.card #oidc {
                    h2 { "Single sign-on (OpenID Connect)" }
                    (notice("error", &format!("The sign-in settings of the environment are unusable: {e}. Correct them and restart tether.")))
                }
            }
        }
    };
    let view = match state.app.oidc_settings(&fixed, &default_redirect).await {
        Ok(view) => view,
        Err(e) => {
            return html! {
                section.card #oidc {
                    h2 { "Single sign-on (OpenID Connect)" }
                    (notice("error", &e.to_string()))
                }
            }
        }
    };
    let status = runtime.status(state).await;
    let values = submitted.unwrap_or(&view.page);
    let origin = |field: &str| {
        view.origins
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, o)| *o)
            .unwrap_or(FieldOrigin::Default)
    };
    let fixed_hint = |field: &str| -> Option<String> {
        match origin(field) {
            FieldOrigin::Environment => Some(format!(
                "Set by {} in the server's environment; change it there.",
                variable(field)
            )),
            FieldOrigin::File => {
                Some("Set by the TETHER_OIDC_CONFIG file; change it there.".to_owned())
            }
            _ => None,
        }
    };
    let text = |fields: &OidcFields, field: &str| -> String {
        match field {
            "issuer" => fields.issuer.clone(),
            "client_id" => fields.client_id.clone(),
            "redirect_url" => fields.redirect_url.clone(),
            "scopes" => fields.scopes.as_ref().map(|v| v.join(" ")),
            "account_id_claim" => fields.account_id_claim.clone(),
            "admin_claim" => fields.admin_claim.clone(),
            "admin_subjects" => fields.admin_subjects.as_ref().map(|v| v.join(", ")),
            "admin_emails" => fields.admin_emails.as_ref().map(|v| v.join(", ")),
            _ => None,
        }
        .unwrap_or_default()
    };
    let input = |field: &str, label: &str, hint: &str, placeholder: &str| -> Markup {
        let fixed = fixed_hint(field);
        let value = if fixed.is_some() {
            text(&view.effective, field)
        } else {
            text(values, field)
        };
        html! {
            label for=(field) { (label) br; span.hint { (hint) @if let Some(f) = &fixed { " " strong { (f) } } } }
            @if fixed.is_some() {
                input id=(field) type="text" value=(value) disabled;
            } @else {
                input id=(field) name=(field) type="text" value=(value) placeholder=(placeholder) autocomplete="off";
            }
        }
    };
    let secret_fixed = fixed_hint("client_secret");
    html! {
        section.card #oidc {
            h2 { "Single sign-on (OpenID Connect)" }
            p #oidc-status {
                @match &status {
                    OidcStatus::Off => { "Sign-in is off: no issuer is configured." }
                    OidcStatus::On { issuer, keys } => {
                        "Sign-in is on: the provider at " code { (issuer) } " answered its discovery with "
                        (keys) " signing " (if *keys == 1 { "key" } else { "keys" }) ". "
                        "Users sign in at " a href="/auth/login" { "/auth/login" } "."
                    }
                    OidcStatus::Broken(message) => {
                        span.bad { "Sign-in is unavailable: " (message) }
                    }
                }
            }
            p.hint {
                "Register tether at the identity platform as a web application (authorization code flow) with the redirect URL "
                code { (view.effective.redirect_url.clone().unwrap_or_else(|| default_redirect.clone())) }
                ". Settings from TETHER_OIDC_* variables or the TETHER_OIDC_CONFIG file win over this page."
            }
            form.stack #oidc-settings method="post" action="/settings/security/oidc" {
                (csrf_field(session))
                input type="hidden" name="version" value=(view.version);
                (input("issuer", "Issuer URL", "The identity platform's issuer, e.g. https://idp.example.com (its discovery document is at /.well-known/openid-configuration).", "https://idp.example.com"))
                (input("client_id", "Client ID", "The client ID the identity platform issued to tether.", ""))
                label for="client_secret" {
                    "Client secret" br;
                    span.hint {
                        @if let Some(f) = &secret_fixed { strong { (f) } }
                        @else if view.page_secret_set { "A secret is saved (never shown). Leave blank to keep it." }
                        @else { "Not set. Saved sealed with the server's key; never shown again." }
                    }
                }
                @if secret_fixed.is_some() {
                    input #client_secret type="password" value="" disabled;
                } @else {
                    input #client_secret name="client_secret" type="password" value="" autocomplete="new-password";
                    @if view.page_secret_set {
                        label.inline { input type="checkbox" name="remove_client_secret" value="yes"; " Remove the saved secret" }
                    }
                }
                (input("redirect_url", "Redirect URL", "Where the identity platform sends the browser back; blank for this server's own.", &default_redirect))
                (input("scopes", "Scopes", "Space-separated; must include openid.", "openid email profile"))
                (input("account_id_claim", "Account ID claim", "The ID token claim whose value is written into External ID.", "sub"))
                (input("admin_claim", "Admin claim", "NAME=VALUE: users whose claim is or contains the value reach the admin UI, e.g. groups=tether-admins.", "groups=tether-admins"))
                (input("admin_subjects", "Admin account IDs", "Comma-separated account IDs that reach the admin UI.", ""))
                (input("admin_emails", "Admin e-mails", "Comma-separated; only a verified e-mail counts.", ""))
                p { button type="submit" { "Save sign-in settings" } }
            }
        }
    }
}

#[derive(Deserialize)]
struct OidcForm {
    #[serde(default)]
    csrf: String,
    /// The version of the settings the form showed.
    #[serde(default)]
    version: String,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    remove_client_secret: Option<String>,
    redirect_url: Option<String>,
    scopes: Option<String>,
    account_id_claim: Option<String>,
    admin_claim: Option<String>,
    admin_subjects: Option<String>,
    admin_emails: Option<String>,
}

async fn save_oidc_settings(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Form(form): Form<OidcForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let fields = OidcFields {
        issuer: form.issuer,
        client_id: form.client_id,
        client_secret: None,
        redirect_url: form.redirect_url,
        scopes: form.scopes.map(|v| words(&v)),
        account_id_claim: form.account_id_claim,
        admin_claim: form.admin_claim,
        admin_subjects: form.admin_subjects.map(|v| list(&v)),
        admin_emails: form.admin_emails.map(|v| list(&v)),
    };
    let secret = match (form.remove_client_secret.as_deref(), form.client_secret) {
        (Some("yes"), _) => SecretChange::Remove,
        (_, Some(secret)) if !secret.is_empty() => SecretChange::Set(secret),
        _ => SecretChange::Keep,
    };
    let result = match state.oidc.fixed() {
        Ok(fixed) => {
            state
                .app
                .save_oidc_settings(
                    fixed,
                    &OidcRuntime::default_redirect(&state),
                    fields.clone(),
                    secret,
                    Some(form.version.as_str()),
                    &session.principal,
                    clock::now(),
                )
                .await
        }
        Err(e) => Err(AppError::Input(e.to_string())),
    };
    match result {
        Ok(()) => Redirect::to("/settings/security?done=oidc").into_response(),
        Err(e @ (AppError::Input(_) | AppError::Field { .. } | AppError::Conflict(_))) => {
            let current = state.app.settings().await.unwrap_or_default();
            let oidc = oidc_section(&state, &session, Some(&fields)).await;
            let message = format!("The sign-in settings were not saved: {e}");
            settings_view(
                &session,
                &current,
                Some(("error", &message)),
                StatusCode::BAD_REQUEST,
                oidc,
            )
        }
        Err(e) => error_page(&session, e),
    }
}

// --- sources and Pull User Data --------------------------------------------------------------

async fn sources(State(state): State<AppState>, AdminPage(session): AdminPage) -> Response {
    use tether_store::Store;
    let list = match state.app.store.list_sources().await {
        Ok(l) => l,
        Err(e) => return error_page(&session, e.into()),
    };
    render(page(
        "Sources",
        Nav::Sources,
        &session,
        sources_body(&session, &list, None),
    ))
}

fn sources_body(session: &Session, list: &[Source], error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { (notice("error", e)) }
        table #sources {
            thead { tr { th { "Name" } th { "Kind" } th { "External ID field" } th { "Links inactive" } th { "Added" } } }
            tbody {
                @for s in list {
                    tr {
                        td { a href={"/sources/" (urlencode(&s.name))} { (s.name) } }
                        td { (s.kind) } td { code { (s.external_id_field.as_str()) } } td { (yes_no(s.link_inactive)) } td { (when(&s.created_at)) }
                    }
                }
                @if list.is_empty() { tr { td colspan="5" { "No source yet." } } }
            }
        }
        h2 { "Add a source" }
        section.card {
            form.stack #add-source method="post" action="/sources" {
                (csrf_field(session))
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="100";
                label for="kind" { "Kind" }
                select #kind name="kind" { @for k in KINDS { option value=(k) { (kind_label(k)) } } }
                (connection_fields(None))
                label for="external_id_field" { "External ID field" }
                (field_select(ExternalIdField::AccountId))
                p { button type="submit" { "Add source" } }
            }
        }
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "jira_cloud" => "Jira Cloud (REST)",
        "jira_dc" => "Jira Data Center (REST)",
        "scim" => "SCIM 2.0 server",
        _ => "File (CSV or JSON Lines)",
    }
}

fn field_select(current: ExternalIdField) -> Markup {
    html! {
        select #external_id_field name="external_id_field" {
            @for f in ExternalIdField::ALL {
                option value=(f.as_str()) selected[*f == current] { (f.as_str()) }
            }
        }
    }
}

fn connection_fields(settings: Option<(&SourceSettings, bool)>) -> Markup {
    let s = settings.map(|(s, _)| s.clone()).unwrap_or_default();
    let has_secret = settings.map(|(_, h)| h).unwrap_or(false);
    html! {
        label for="base_url" { "Base URL" span.hint { " Jira site (https://example.atlassian.net) or SCIM base (…/scim/v2)" } }
        input #base_url type="url" name="base_url" value=(s.base_url.unwrap_or_default());
        label for="user" { "User" span.hint { " Jira Cloud: the e-mail the API token belongs to" } }
        input #user type="text" name="user" value=(s.user.unwrap_or_default());
        label for="secret" { "Credential" span.hint { " API token, personal access token or bearer token: write-only, never shown again" } }
        input #secret type="password" name="secret" autocomplete="new-password" placeholder=(if has_secret { "stored — leave blank to keep" } else { "" });
        label for="account_id_attribute" { "SCIM account ID attribute" span.hint { " id or externalId" } }
        input #account_id_attribute type="text" name="account_id_attribute" value=(s.account_id_attribute.unwrap_or_default());
        label for="path" { "File path" span.hint { " for a file source: an accounts CSV or JSON Lines file on the server" } }
        input #path type="text" name="path" value=(s.path.unwrap_or_default());
    }
}

#[derive(Deserialize)]
struct SourceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    external_id_field: Option<String>,
    #[serde(default)]
    link_inactive: Option<String>,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    account_id_attribute: String,
    #[serde(default)]
    path: String,
}

fn some(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

impl SourceForm {
    fn settings(&self, old: SourceSettings) -> SourceSettings {
        SourceSettings {
            base_url: some(&self.base_url),
            user: some(&self.user),
            account_id_attribute: some(&self.account_id_attribute),
            path: some(&self.path),
            ..old
        }
    }
    fn field(&self) -> Result<Option<ExternalIdField>, AppError> {
        self.external_id_field
            .as_deref()
            .map(|f| {
                f.parse::<ExternalIdField>()
                    .map_err(|e| AppError::Input(e.to_string()))
            })
            .transpose()
    }
}

async fn add_source(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Form(form): Form<SourceForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let at = clock::now();
    let result = async {
        if !KINDS.contains(&form.kind.as_str()) {
            return Err(AppError::Input(format!(
                "kind must be one of {}",
                KINDS.join(", ")
            )));
        }
        let field = form.field()?.unwrap_or(ExternalIdField::AccountId);
        let source = state
            .app
            .add_source(
                NewSource {
                    name: form.name.trim().to_owned(),
                    kind: form.kind.clone(),
                    external_id_field: field,
                    link_inactive: form.link_inactive.as_deref() == Some("yes"),
                },
                at,
            )
            .await?;
        let settings = form.settings(SourceSettings::default());
        state
            .app
            .configure_source(
                &source,
                None,
                None,
                Some(&settings),
                Some(&form.secret),
                &session.principal,
                at,
            )
            .await?;
        Ok(source)
    }
    .await;
    match result {
        Ok(source) => {
            Redirect::to(&format!("/sources/{}", urlencode(&source.name))).into_response()
        }
        Err(
            e @ (AppError::Input(_) | AppError::Store(tether_store::StoreError::Conflict { .. })),
        ) => {
            use tether_store::Store;
            let list = state.app.store.list_sources().await.unwrap_or_default();
            (
                StatusCode::BAD_REQUEST,
                Html(
                    page(
                        "Sources",
                        Nav::Sources,
                        &session,
                        sources_body(&session, &list, Some(&e.to_string())),
                    )
                    .into_string(),
                ),
            )
                .into_response()
        }
        Err(e) => error_page(&session, e),
    }
}

async fn source_page(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(name): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Response {
    let message = (query.done.as_deref() == Some("saved")).then_some(("ok", "Source saved."));
    source_view(&state, &session, &name, message, None, StatusCode::OK).await
}

async fn source_view(
    state: &AppState,
    session: &Session,
    name: &str,
    message: Option<(&str, &str)>,
    report: Option<&ReconcileReport>,
    status: StatusCode,
) -> Response {
    let result = async {
        let source = state.app.source(Some(name)).await?;
        let settings = state.app.source_settings(&source).await?;
        let runs = state.app.list_runs(&source, 20).await?;
        Ok::<_, AppError>((source, settings, runs))
    }
    .await;
    let (source, (settings, has_secret), runs) = match result {
        Ok(r) => r,
        Err(e) => return error_page(session, e),
    };
    let action = format!("/sources/{}", urlencode(&source.name));
    let shown_field = report.map(|r| r.field).unwrap_or(source.external_id_field);
    let body = html! {
        @if let Some((kind, text)) = message { (notice(kind, text)) }
        section.card {
            h2 { "Pull User Data" }
            p.muted { "Run starts a background job that fetches the accounts of " (kind_label(&source.kind)) " source " strong { (source.name) } ", matches every user, and writes External IDs, with live progress. Preview shows the plan against the accounts stored by the last pull, and writes nothing." }
            form.row #pull-user-data method="post" action={(action) "/pull"} {
                (csrf_field(session))
                div {
                    label for="pull-field" { "External ID field sync" } br;
                    select #pull-field name="external_id_field" {
                        @for f in ExternalIdField::ALL {
                            option value=(f.as_str()) selected[*f == shown_field] { (f.as_str()) }
                        }
                    }
                }
                div {
                    button.secondary type="submit" name="action" value="preview" { "Preview" }
                    " "
                    button type="submit" name="action" value="run" { "Run" }
                }
            }
            @if let Some(r) = report { (report_view(r)) }
        }
        section.card {
            h2 { "Connection" }
            form.stack #edit-source method="post" action=(action) {
                (csrf_field(session))
                p.muted { "Kind: " (kind_label(&source.kind)) }
                (connection_fields(Some((&settings, has_secret))))
                label for="link_inactive" { "Link inactive accounts" }
                select #link_inactive name="link_inactive" {
                    option value="yes" selected[source.link_inactive] { "Yes" }
                    option value="no" selected[!source.link_inactive] { "No" }
                }
                p { button type="submit" { "Save" } }
            }
        }
        h2 { "Runs" }
        table #runs {
            thead { tr { th { "Run" } th { "Kind" } th { "Started" } th { "State" } th { "Field" } th.num { "Written" } th { "By" } } }
            tbody {
                @for r in &runs {
                    tr { td { (r.pk) } td { (r.kind) @if r.dry_run { " (dry run)" } } td { (when(&r.started_at)) } td { (r.state) } td { code { (r.external_id_field.as_str()) } } td.num { (r.applied) } td { (r.actor) } }
                }
                @if runs.is_empty() { tr { td colspan="7" { "No run yet." } } }
            }
        }
    };
    (
        status,
        Html(
            page(
                &format!("Sources › {}", source.name),
                Nav::Sources,
                session,
                body,
            )
            .into_string(),
        ),
    )
        .into_response()
}

fn report_view(r: &ReconcileReport) -> Markup {
    html! {
        div #run-report data-run-state=(if r.dry_run { "previewed" } else { "succeeded" }) {
            @if r.dry_run {
                (notice("info", &format!("Preview with External ID field {}: {} External IDs would be written. Nothing was written.", r.field.as_str(), r.planned)))
            } @else {
                (notice("ok", &format!("Run finished with External ID field {}: {} External IDs written.", r.field.as_str(), r.applied)))
            }
            table #plan {
                thead { tr { th { "Situation" } th.num { "Users" } } }
                tbody {
                    @for (s, n) in &r.summary {
                        tr { td { a href={"/users?situation=" (s.as_str())} { (situation_badge(s.as_str())) } } td.num { (n) } }
                    }
                }
            }
            p.muted { (r.users) " users, " (r.accounts) " accounts, " (r.duration_ms) " ms." }
        }
    }
}

async fn edit_source(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(name): Path<String>,
    Form(form): Form<SourceForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let result = async {
        let source = state.app.source(Some(&name)).await?;
        let (old, _) = state.app.source_settings(&source).await?;
        let link_inactive = form
            .link_inactive
            .as_deref()
            .map(|v| parse_yes_no("link_inactive", v))
            .transpose()?;
        state
            .app
            .configure_source(
                &source,
                form.field()?,
                link_inactive,
                Some(&form.settings(old)),
                Some(&form.secret),
                &session.principal,
                clock::now(),
            )
            .await
    }
    .await;
    match result {
        Ok(()) => {
            Redirect::to(&format!("/sources/{}?done=saved", urlencode(&name))).into_response()
        }
        Err(e @ AppError::Input(_)) => {
            let text = e.to_string();
            source_view(
                &state,
                &session,
                &name,
                Some(("error", &text)),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => error_page(&session, e),
    }
}

#[derive(Deserialize)]
struct PullForm {
    #[serde(default)]
    csrf: String,
    external_id_field: String,
    action: String,
}

async fn pull(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(name): Path<String>,
    Form(form): Form<PullForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    let field = match form.external_id_field.parse::<ExternalIdField>() {
        Ok(f) => f,
        Err(e) => return error_page(&session, AppError::Input(e.to_string())),
    };
    let dry_run = match form.action.as_str() {
        "preview" => true,
        "run" => false,
        other => {
            return error_page(
                &session,
                AppError::Input(format!("action must be preview or run, not '{other}'")),
            )
        }
    };
    if !dry_run {
        // Run = a background pull job (fetch, store, plan, safeguard, apply) with the chosen
        // field saved on the source, as the dropdown promises; its page shows live progress.
        let started = async {
            let source = state.app.source(Some(&name)).await?;
            state
                .app
                .configure_source(
                    &source,
                    Some(field),
                    None,
                    None,
                    None,
                    &session.principal,
                    clock::now(),
                )
                .await?;
            crate::jobs::start(&state.app, &name, false, &session.principal, clock::now()).await
        }
        .await;
        return match started {
            Ok(job) => Redirect::to(&format!("/jobs/{}", job.pk)).into_response(),
            Err(
                e @ (AppError::Input(_)
                | AppError::Conflict(_)
                | AppError::Store(tether_store::StoreError::Conflict { .. })),
            ) => {
                let text = e.to_string();
                source_view(
                    &state,
                    &session,
                    &name,
                    Some(("error", &text)),
                    None,
                    StatusCode::CONFLICT,
                )
                .await
            }
            Err(e) => error_page(&session, e),
        };
    }
    // Preview plans against the accounts stored by the last pull and writes nothing.
    let options = ReconcileOptions {
        field: Some(field),
        dry_run: true,
        ..ReconcileOptions::default()
    };
    match state
        .app
        .reconcile_as(
            &session.principal,
            &name,
            options,
            clock::now(),
            &crate::app::NoProgress,
        )
        .await
    {
        Ok(report) => {
            source_view(&state, &session, &name, None, Some(&report), StatusCode::OK).await
        }
        Err(e @ AppError::Input(_)) => {
            let text = e.to_string();
            source_view(
                &state,
                &session,
                &name,
                Some(("error", &text)),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => error_page(&session, e),
    }
}

// --- audit -----------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct AuditQuery {
    origin: Option<String>,
    actor: Option<String>,
    user: Option<String>,
    before: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Query(query): Query<AuditQuery>,
) -> Response {
    let origin = match query.origin.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => match o.parse::<Origin>() {
            Ok(o) => Some(o),
            Err(e) => return error_page(&session, AppError::Input(e.to_string())),
        },
    };
    let actor = query
        .actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    let user = query
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let result = async {
        let user_pk = match user {
            Some(id) => {
                use tether_store::admin::AdminStore;
                Some(state.app.store.get_user(id).await?.pk)
            }
            None => None,
        };
        state
            .app
            .audit_page(&AuditFilter {
                before_pk: query.before,
                limit: PAGE_SIZE,
                user_pk,
                origin,
                actor: actor.map(str::to_owned),
            })
            .await
    }
    .await;
    let rows = match result {
        Ok(r) => r,
        Err(e) => return error_page(&session, e),
    };
    let next = (rows.len() as u32 == PAGE_SIZE)
        .then(|| rows.last().map(|(e, _)| e.pk))
        .flatten();
    let mut base = String::from("/audit?");
    if let Some(o) = origin {
        base.push_str(&format!("origin={}&", o.as_str()));
    }
    if let Some(a) = actor {
        base.push_str(&format!("actor={}&", urlencode(a)));
    }
    if let Some(u) = user {
        base.push_str(&format!("user={}&", urlencode(u)));
    }
    let body = html! {
        form.row method="get" action="/audit" #audit-filter {
            div { label for="origin" { "Origin" } br;
                select #origin name="origin" {
                    option value="" { "Any" }
                    @for o in Origin::ALL { option value=(o.as_str()) selected[Some(*o) == origin] { (o.as_str()) } }
                }
            }
            div { label for="actor" { "Actor" } br; input #actor type="text" name="actor" value=(actor.unwrap_or("")); }
            div { label for="user" { "User id" } br; input #user type="text" name="user" value=(user.unwrap_or("")); }
            div { button type="submit" { "Filter" } }
        }
        table #audit {
            thead { tr { th { "When" } th { "User" } th { "Origin" } th { "Actor" } th { "Old" } th { "New" } th { "Reason" } th { "Run" } } }
            tbody {
                @for (e, id) in &rows {
                    tr {
                        td { (when(&e.at)) }
                        td { a href={"/users/" (urlencode(id))} { (id) } }
                        td.origin { (e.origin.as_str()) } td { (e.actor) }
                        td.mono { (e.old_value.as_deref().unwrap_or("∅")) } td.mono { (e.new_value.as_deref().unwrap_or("∅")) }
                        td { (e.reason) } td { (e.run_pk.map(|r| r.to_string()).unwrap_or_default()) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="8" { "No entries match." } } }
            }
        }
        div.pager {
            @if query.before.is_some() { a.button.secondary href=(base.trim_end_matches('&').trim_end_matches('?')) { "← Newest" } }
            @if let Some(before) = next { a.button.secondary href={(base) "before=" (before)} { "Older →" } }
        }
    };
    render(page("Audit log", Nav::Audit, &session, body))
}

// --- tokens ----------------------------------------------------------------------------------

async fn tokens(State(state): State<AppState>, AdminPage(session): AdminPage) -> Response {
    tokens_view(&state, &session, None, StatusCode::OK).await
}

async fn tokens_view(
    state: &AppState,
    session: &Session,
    created: Option<Result<(String, String), String>>,
    status: StatusCode,
) -> Response {
    let list = match state.app.list_tokens().await {
        Ok(l) => l,
        Err(e) => return error_page(session, e),
    };
    let body = html! {
        @match &created {
            Some(Ok((name, token))) => {
                div.notice.ok #new-token {
                    p { "Token " strong { (name) } " created. It is shown once: copy it now." }
                    p { code { (token) } }
                }
            }
            Some(Err(e)) => { (notice("error", e)) }
            None => {}
        }
        table #tokens {
            thead { tr { th { "Name" } th { "Scope" } th { "Created" } th { "Last used" } th { "State" } th {} } }
            tbody {
                @for t in &list {
                    tr {
                        td { (t.name) } td { code { (t.scope) } } td { (when(&t.created_at)) }
                        td { (t.last_used_at.as_ref().map(when).unwrap_or_else(|| "never".to_owned())) }
                        td { @if t.revoked_at.is_some() { "revoked" } @else { "active" } }
                        td { @if t.revoked_at.is_none() {
                            form.inline method="post" action={"/tokens/" (t.pk) "/revoke"} data-confirm="Revoke this token? Clients using it stop working." {
                                (csrf_field(session)) button.danger type="submit" { "Revoke" }
                            }
                        } }
                    }
                }
                @if list.is_empty() { tr { td colspan="6" { "No token yet." } } }
            }
        }
        h2 { "Create a token" }
        section.card {
            form.row #create-token method="post" action="/tokens" {
                (csrf_field(session))
                div { label for="token-name" { "Name" } br; input #token-name type="text" name="name" required maxlength="100"; }
                div { label for="scope" { "Scope" } br; select #scope name="scope" { option value="admin" { "admin (REST API)" } option value="scim" { "scim (SCIM provisioning)" } } }
                div { button type="submit" { "Create token" } }
            }
        }
    };
    (
        status,
        Html(page("API tokens", Nav::Tokens, session, body).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
}

async fn create_token(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Form(form): Form<TokenForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    if !matches!(form.scope.as_str(), "admin" | "scim") {
        return tokens_view(
            &state,
            &session,
            Some(Err("scope must be admin or scim".to_owned())),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let mut secret = [0u8; 32];
    if getrandom::fill(&mut secret).is_err() {
        return error_page(&session, AppError::Io("no randomness".to_owned()));
    }
    match state
        .app
        .create_token(form.name.trim(), &form.scope, secret, clock::now())
        .await
    {
        Ok(token) => {
            tokens_view(
                &state,
                &session,
                Some(Ok((form.name.trim().to_owned(), token))),
                StatusCode::OK,
            )
            .await
        }
        Err(
            e @ (AppError::Input(_) | AppError::Store(tether_store::StoreError::Conflict { .. })),
        ) => {
            tokens_view(
                &state,
                &session,
                Some(Err(e.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => error_page(&session, e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn revoke_token(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(pk): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if check_csrf(&session, &form.csrf).is_err() {
        return csrf_refused(&session);
    }
    match state
        .app
        .revoke_token(pk, &session.principal, clock::now())
        .await
    {
        Ok(()) => Redirect::to("/tokens").into_response(),
        Err(e) => error_page(&session, e),
    }
}
