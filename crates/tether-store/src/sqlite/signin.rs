//! signin: the sqlite implementation of the `signin` units of work (see `crate::signin`).
//!
//! SQLite has one writer, so a sign-in link and a run's batch never interleave: whichever
//! takes the write lock first writes, and the other finds the External ID set (the guard in
//! the `UPDATE`) or the value held (the unique index) and writes nothing.

use super::*;
use crate::signin::*;
use tether_core::signin::{settle_sign_in, Profile, SignInFacts, MAX_EMAIL_PROFILES};

fn profile(user: UserRecord) -> Profile {
    Profile {
        pk: user.pk,
        id: user.id,
        username: user.username,
        email: user.email,
        external_id: user.external_id,
        active: user.active,
        excluded: user.excluded,
    }
}

fn oidc_login_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OidcLogin> {
    Ok(OidcLogin {
        handle_hash: row.get(0)?,
        state: row.get(1)?,
        nonce: row.get(2)?,
        pkce_verifier: row.get(3)?,
        return_to: row.get(4)?,
        created_at: parse_ts(&row.get::<_, String>(5)?)?,
        expires_at: parse_ts(&row.get::<_, String>(6)?)?,
        issuer: row.get(7)?,
        client_id: row.get(8)?,
    })
}

/// Why a guarded link wrote nothing, in the order the engine's apply uses.
fn classify_link(tx: &Transaction<'_>, link: &SignInLink<'_>) -> Result<ChangeResult> {
    let current: Option<(Option<String>, bool)> = tx
        .prepare_cached("SELECT external_id, excluded FROM users WHERE pk = ?1")?
        .query_row([link.user_pk], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match current {
        None => ChangeResult::Gone,
        Some((Some(value), _)) if value == link.value => ChangeResult::AlreadySet,
        Some((Some(value), _)) => ChangeResult::Changed { current: value },
        Some((None, true)) => ChangeResult::Excluded,
        Some((None, false)) => {
            let holder: Option<i64> = tx
                .prepare_cached("SELECT pk FROM users WHERE external_id = ?1")?
                .query_row([link.value], |r| r.get(0))
                .optional()?;
            match holder {
                Some(holder_pk) => ChangeResult::Taken { holder_pk },
                None => ChangeResult::Changed {
                    current: String::new(),
                },
            }
        }
    })
}

/// The guarded write of one link, with its audit entry (origin `login`).
fn link_tx(tx: &Transaction<'_>, link: &SignInLink<'_>, at: &str) -> Result<ChangeResult> {
    // The unique index refuses a value another profile holds; SQLite then undoes just this
    // statement, and `classify_link` names the holder.
    let written = tx
        .prepare_cached(
            "UPDATE users SET external_id = ?1, external_id_origin = 'login', external_id_set_at = ?2
             WHERE pk = ?3 AND external_id IS NULL AND excluded = 0",
        )?
        .execute(params![link.value, at, link.user_pk]);
    let written = match written {
        Ok(n) => n,
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            0
        }
        Err(e) => return Err(e.into()),
    };
    if written == 1 {
        insert_audit(
            tx,
            AuditWrite {
                at,
                actor: link.actor,
                origin: Origin::Login,
                user_pk: link.user_pk,
                old: None,
                new: Some(link.value),
                reason: link.reason,
                run_pk: None,
            },
        )?;
        Ok(ChangeResult::Applied)
    } else {
        classify_link(tx, link)
    }
}

/// Appends a trail entry, and for a refusal about a profile an audit entry on it.
fn event_tx(tx: &Transaction<'_>, event: &NewSignInEvent, at: &str) -> Result<i64> {
    let pk: i64 = tx
        .prepare_cached(
            "INSERT INTO sign_in_events (at, actor, issuer, account_id, email, email_verified,
                situation, signed_in, linked_now, user_pk, related, explanation, fix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING pk",
        )?
        .query_row(
            params![
                at,
                event.actor,
                event.issuer,
                event.account_id,
                event.email,
                event.email_verified,
                event.situation.as_str(),
                event.signed_in,
                event.linked_now,
                event.user_pk,
                encode_pks(&event.related),
                event.explanation,
                event.fix
            ],
            |r| r.get(0),
        )?;
    if let (false, Some(user_pk)) = (event.signed_in, event.user_pk) {
        let current: Option<Option<String>> = tx
            .prepare_cached("SELECT external_id FROM users WHERE pk = ?1")?
            .query_row([user_pk], |r| r.get(0))
            .optional()?;
        if let Some(current) = current {
            insert_audit(
                tx,
                AuditWrite {
                    at,
                    actor: &event.actor,
                    origin: Origin::Login,
                    user_pk,
                    old: current.as_deref(),
                    new: current.as_deref(),
                    reason: &refusal_reason(event),
                    run_pk: None,
                },
            )?;
        }
    }
    Ok(pk)
}

impl SigninStore for SqliteStore {
    async fn load_sign_in_facts(
        &self,
        account_id: &str,
        email_key: Option<&str>,
    ) -> Result<SignInFacts> {
        self.read(|c| {
            // One snapshot for both lookups.
            let tx = c.unchecked_transaction()?;
            let holder = tx
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users AS u WHERE u.external_id = ?1"
                ))?
                .query_row([account_id], user_row)
                .optional()?
                .map(profile);
            let by_email = match email_key {
                None => Vec::new(),
                Some(key) => tx
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users AS u WHERE u.email_key = ?1 ORDER BY u.pk LIMIT ?2"
                    ))?
                    .query_map(params![key, MAX_EMAIL_PROFILES as i64 + 1], user_row)?
                    .map(|row| row.map(profile))
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            tx.commit()?;
            Ok(SignInFacts { holder, by_email })
        })
    }

    async fn link_at_sign_in(&self, link: &SignInLink<'_>) -> Result<ChangeResult> {
        let at = ts(link.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let result = link_tx(&tx, link, &at)?;
            tx.commit()?;
            Ok(result)
        })
    }

    async fn record_sign_in(&self, record: &SignInRecord<'_>) -> Result<RecordedSignIn> {
        let at = ts(record.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (decision, result) = match &record.decision.change {
                None => (record.decision.clone(), None),
                Some(change) => {
                    let link = SignInLink {
                        user_pk: change.user_pk,
                        value: &change.new,
                        actor: record.actor,
                        reason: record.reason,
                        at: record.at,
                    };
                    let result = link_tx(&tx, &link, &at)?;
                    let holder = match &result {
                        ChangeResult::Taken { holder_pk } => tx
                            .prepare_cached(&format!(
                                "SELECT {USER_COLUMNS} FROM users AS u WHERE u.pk = ?1"
                            ))?
                            .query_row([holder_pk], user_row)
                            .optional()?
                            .map(profile),
                        _ => None,
                    };
                    (
                        settle_sign_in(record.decision, &result, holder.as_ref()),
                        Some(result),
                    )
                }
            };
            let linked_now = result == Some(ChangeResult::Applied);
            let event = NewSignInEvent::from_record(record, &decision, linked_now);
            let event_pk = event_tx(&tx, &event, &at)?;
            tx.commit()?;
            Ok(RecordedSignIn {
                decision,
                result,
                linked_now,
                event_pk,
            })
        })
    }

    async fn insert_sign_in_event(&self, event: &NewSignInEvent) -> Result<i64> {
        let at = ts(event.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let pk = event_tx(&tx, event, &at)?;
            tx.commit()?;
            Ok(pk)
        })
    }

    async fn list_sign_in_events(
        &self,
        user_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SignInEvent>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT pk, at, actor, issuer, account_id, email, email_verified, situation, signed_in,
                        linked_now, user_pk, related, explanation, fix
                 FROM sign_in_events WHERE ?1 IS NULL OR user_pk = ?1 ORDER BY pk DESC LIMIT ?2",
            )?;
            let mut rows = statement.query(params![user_pk, limit])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(SignInEvent {
                    pk: row.get(0)?,
                    at: parse_ts(&row.get::<_, String>(1)?)?,
                    actor: row.get(2)?,
                    issuer: row.get(3)?,
                    account_id: row.get(4)?,
                    email: row.get(5)?,
                    email_verified: row.get(6)?,
                    situation: parse_situation(&row.get::<_, String>(7)?)?,
                    signed_in: row.get(8)?,
                    linked_now: row.get(9)?,
                    user_pk: row.get(10)?,
                    related: decode_pks(&row.get::<_, String>(11)?)?,
                    explanation: row.get(12)?,
                    fix: row.get(13)?,
                });
            }
            Ok(events)
        })
    }

    async fn insert_oidc_login(&self, login: &OidcLogin) -> Result<()> {
        let created_at = ts(login.created_at)?;
        let expires_at = ts(login.expires_at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM oidc_logins WHERE expires_at < ?1")?
                .execute([&created_at])?;
            tx.prepare_cached(
                "INSERT INTO oidc_logins (handle_hash, state, nonce, pkce_verifier, return_to, created_at, expires_at, issuer, client_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                login.handle_hash,
                login.state,
                login.nonce,
                login.pkce_verifier,
                login.return_to,
                created_at,
                expires_at,
                login.issuer,
                login.client_id
            ])
            .map_err(|e| conflict(e, "oidc login"))?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn take_oidc_login(&self, handle_hash: &str) -> Result<Option<OidcLogin>> {
        self.write(|c| {
            Ok(c.prepare_cached(
                "DELETE FROM oidc_logins WHERE handle_hash = ?1
                 RETURNING handle_hash, state, nonce, pkce_verifier, return_to, created_at, expires_at, issuer, client_id",
            )?
            .query_row([handle_hash], oidc_login_row)
            .optional()?)
        })
    }
}
