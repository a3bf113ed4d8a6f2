//! signin: the postgres implementation of the `signin` units of work (see `crate::signin`).
//!
//! A sign-in link is one guarded `UPDATE` (External ID still NULL, profile not excluded) in
//! read-committed mode: a concurrent writer of the same row makes it wait and then re-check
//! the guard on the new row version, and the unique constraint refuses a value another
//! transaction committed meanwhile. Either way nothing is overwritten; a fresh read then says
//! why (`ChangeResult`).

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

const LOGIN_COLUMNS: &str =
    "handle_hash, state, nonce, pkce_verifier, return_to, created_at, expires_at, issuer, client_id";

fn oidc_login_from(row: &Row) -> Result<OidcLogin> {
    Ok(OidcLogin {
        handle_hash: row.try_get(0)?,
        state: row.try_get(1)?,
        nonce: row.try_get(2)?,
        pkce_verifier: row.try_get(3)?,
        return_to: row.try_get(4)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        issuer: row.try_get(7)?,
        client_id: row.try_get(8)?,
    })
}

fn sign_in_event_from(row: &Row) -> Result<SignInEvent> {
    Ok(SignInEvent {
        pk: row.try_get(0)?,
        at: row.try_get(1)?,
        actor: row.try_get(2)?,
        issuer: row.try_get(3)?,
        account_id: row.try_get(4)?,
        email: row.try_get(5)?,
        email_verified: row.try_get(6)?,
        situation: parse_situation(row.try_get(7)?)?,
        signed_in: row.try_get(8)?,
        linked_now: row.try_get(9)?,
        user_pk: row.try_get(10)?,
        related: decode_pks(row.try_get(11)?)?,
        explanation: row.try_get(12)?,
        fix: row.try_get(13)?,
    })
}

/// Why a guarded link wrote nothing, in the order the engine's apply uses; read fresh.
const CLASSIFY_LINK: &str = "
SELECT u.external_id, u.excluded, (SELECT h.pk FROM users h WHERE h.external_id = $2)
FROM users u WHERE u.pk = $1";

fn classify_link(row: Option<&Row>, value: &str) -> Result<ChangeResult> {
    let Some(row) = row else {
        return Ok(ChangeResult::Gone);
    };
    let current: Option<String> = row.try_get(0)?;
    let excluded: bool = row.try_get(1)?;
    let holder: Option<i64> = row.try_get(2)?;
    Ok(match (current, excluded, holder) {
        (Some(current), _, _) if current == value => ChangeResult::AlreadySet,
        (Some(current), _, _) => ChangeResult::Changed { current },
        (None, true, _) => ChangeResult::Excluded,
        (None, false, Some(holder_pk)) => ChangeResult::Taken { holder_pk },
        (None, false, None) => ChangeResult::Changed {
            current: String::new(),
        },
    })
}

/// The guarded write of one link with its audit entry (origin `login`), inside `tx`: the
/// `UPDATE` runs in a savepoint, so a unique violation (another profile committed the value)
/// undoes only it, and a fresh read in `tx` says why nothing was written.
async fn link_in(tx: &mut Transaction<'_>, link: &SignInLink<'_>) -> Result<ChangeResult> {
    let savepoint = tx.savepoint("sign_in_link").await?;
    let updated = savepoint
        .query_opt(
            "UPDATE users SET external_id = $1, external_id_origin = 'login', external_id_set_at = $2
             WHERE pk = $3 AND external_id IS NULL AND NOT excluded RETURNING pk",
            &[&link.value, &link.at, &link.user_pk],
        )
        .await;
    match updated {
        Ok(Some(_)) => {
            savepoint
                .execute(
                    "INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
                     VALUES ($1, $2, 'login', $3, NULL, $4, $5, NULL)",
                    &[&link.at, &link.actor, &link.user_pk, &link.value, &link.reason],
                )
                .await?;
            savepoint.commit().await?;
            return Ok(ChangeResult::Applied);
        }
        Ok(None) => savepoint.commit().await?,
        Err(err)
            if err.as_db_error().is_some_and(|db| {
                *db.code() == SqlState::UNIQUE_VIOLATION
                    && db.constraint() == Some("users_external_id")
            }) =>
        {
            savepoint.rollback().await?
        }
        Err(err) => return Err(err.into()),
    }
    let row = tx
        .query_opt(CLASSIFY_LINK, &[&link.user_pk, &link.value])
        .await?;
    classify_link(row.as_ref(), link.value)
}

/// The trail entry and, for a refusal about a profile, an audit entry on it (`$14`: whether,
/// `$15`: its reason), in one statement (data-modifying CTEs always run to completion).
const INSERT_SIGN_IN_EVENT: &str = "
WITH event AS (
    INSERT INTO sign_in_events (at, actor, issuer, account_id, email, email_verified,
        situation, signed_in, linked_now, user_pk, related, explanation, fix)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING pk
), refusal AS (
    INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
    SELECT $1, $2, 'login', u.pk, u.external_id, u.external_id, $15, NULL
    FROM users u WHERE $14 AND u.pk = $10
)
SELECT pk FROM event";

/// Appends a trail entry, and for a refusal about a profile an audit entry on it, through
/// `client` (a transaction, or a connection: the statement is atomic on its own).
async fn event_in<C: deadpool_postgres::GenericClient>(
    client: &C,
    event: &NewSignInEvent,
) -> Result<i64> {
    let related = encode_pks(&event.related);
    let audit_refusal = !event.signed_in && event.user_pk.is_some();
    let reason = if audit_refusal {
        refusal_reason(event)
    } else {
        String::new()
    };
    let statement = client.prepare_cached(INSERT_SIGN_IN_EVENT).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &event.at,
                &event.actor,
                &event.issuer,
                &event.account_id,
                &event.email,
                &event.email_verified,
                &event.situation.as_str(),
                &event.signed_in,
                &event.linked_now,
                &event.user_pk,
                &related,
                &event.explanation,
                &event.fix,
                &audit_refusal,
                &reason,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// A sign-in that links, in one statement: the guarded `UPDATE`, its audit entry and the
/// trail entry (with `linked_now`), all or nothing. No row back: the guard refused and
/// nothing was written.
const LINK_AND_RECORD: &str = "
WITH updated AS (
    UPDATE users SET external_id = $1, external_id_origin = 'login', external_id_set_at = $2
    WHERE pk = $3 AND external_id IS NULL AND NOT excluded RETURNING pk
), audited AS (
    INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
    SELECT $2, $4, 'login', pk, NULL, $1, $5, NULL FROM updated RETURNING user_pk
)
INSERT INTO sign_in_events (at, actor, issuer, account_id, email, email_verified,
    situation, signed_in, linked_now, user_pk, related, explanation, fix)
SELECT $6, $7, $8, $9, $10, $11, $12, $13, true, $14, $15, $16, $17 FROM audited
RETURNING pk";

/// Whether `err` is the unique constraint on External ID.
fn external_id_taken(err: &StoreError) -> bool {
    matches!(err, StoreError::Postgres(pg) if pg.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("users_external_id")
    }))
}

impl PgStore {
    async fn link_at_sign_in_tx(&self, link: &SignInLink<'_>) -> Result<ChangeResult> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await?;
        let result = link_in(&mut tx, link).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Records a sign-in in one statement when it can: a decision without a change is its
    /// trail entry; a link that the guard lets through is [`LINK_AND_RECORD`]. A link the
    /// guard refuses, or that loses a race to the unique constraint, wrote nothing and is
    /// recorded again the careful way ([`Self::record_link`]), which reads why.
    async fn record_sign_in_tx(&self, record: &SignInRecord<'_>) -> Result<RecordedSignIn> {
        let Some(change) = &record.decision.change else {
            let client = self.client().await?;
            let event = NewSignInEvent::from_record(record, record.decision, false);
            let event_pk = event_in(&client, &event).await?;
            return Ok(RecordedSignIn {
                decision: record.decision.clone(),
                result: None,
                linked_now: false,
                event_pk,
            });
        };
        let event = NewSignInEvent::from_record(record, record.decision, true);
        let related = encode_pks(&event.related);
        let client = self.client().await?;
        let statement = client.prepare_cached(LINK_AND_RECORD).await?;
        let written = client
            .query_opt(
                &statement,
                &[
                    &change.new,
                    &record.at,
                    &change.user_pk,
                    &record.actor,
                    &record.reason,
                    &event.at,
                    &event.actor,
                    &event.issuer,
                    &event.account_id,
                    &event.email,
                    &event.email_verified,
                    &event.situation.as_str(),
                    &event.signed_in,
                    &event.user_pk,
                    &related,
                    &event.explanation,
                    &event.fix,
                ],
            )
            .await;
        drop(client);
        match written {
            Ok(Some(row)) => Ok(RecordedSignIn {
                decision: record.decision.clone(),
                result: Some(ChangeResult::Applied),
                linked_now: true,
                event_pk: row.try_get(0)?,
            }),
            Ok(None) => self.record_link(record).await,
            Err(err) => {
                let err = StoreError::from(err);
                if external_id_taken(&err) {
                    self.record_link(record).await
                } else {
                    Err(err)
                }
            }
        }
    }

    /// A sign-in with a link, in a transaction: the link in a savepoint ([`link_in`]), which
    /// survives a unique violation and reads why nothing was written; the decision settled
    /// on that; the trail entry.
    async fn record_link(&self, record: &SignInRecord<'_>) -> Result<RecordedSignIn> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await?;
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
                let result = link_in(&mut tx, &link).await?;
                let holder = match &result {
                    ChangeResult::Taken { holder_pk } => tx
                        .query_opt(
                            &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.pk = $1"),
                            &[holder_pk],
                        )
                        .await?
                        .as_ref()
                        .map(user_from)
                        .transpose()?
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
        let event_pk = event_in(&tx, &event).await?;
        tx.commit().await?;
        Ok(RecordedSignIn {
            decision,
            result,
            linked_now,
            event_pk,
        })
    }

    async fn insert_sign_in_event_tx(&self, event: &NewSignInEvent) -> Result<i64> {
        let client = self.client().await?;
        event_in(&client, event).await
    }
}

impl SigninStore for PgStore {
    async fn load_sign_in_facts(
        &self,
        account_id: &str,
        email_key: Option<&str>,
    ) -> Result<SignInFacts> {
        let client = self.client().await.map_err(classify)?;
        // One statement, one snapshot: the holder first, then the e-mail's profiles by pk.
        let statement = client
            .prepare_cached(&format!(
                "(SELECT 0 AS part, {USER_COLUMNS} FROM users u WHERE u.external_id = $1)
                 UNION ALL
                 (SELECT 1 AS part, {USER_COLUMNS} FROM users u WHERE u.email_key = $2
                  ORDER BY u.pk LIMIT $3)"
            ))
            .await
            .map_err(|e| classify(e.into()))?;
        let limit = MAX_EMAIL_PROFILES as i64 + 1;
        let rows = client
            .query(&statement, &[&account_id, &email_key, &limit])
            .await
            .map_err(|e| classify(e.into()))?;
        let mut facts = SignInFacts::default();
        for row in &rows {
            let part: i32 = row.try_get(0)?;
            // USER_COLUMNS start at index 1 here.
            let user = UserRecord {
                pk: row.try_get(1)?,
                id: row.try_get(2)?,
                username: row.try_get(3)?,
                email: row.try_get(4)?,
                email_key: row.try_get(5)?,
                display_name: row.try_get(6)?,
                active: row.try_get(7)?,
                external_id: row.try_get(8)?,
                external_id_origin: row
                    .try_get::<_, Option<&str>>(9)?
                    .map(parse_name::<Origin>)
                    .transpose()?,
                external_id_set_at: row.try_get(10)?,
                excluded: row.try_get(11)?,
            };
            if part == 0 {
                facts.holder = Some(profile(user));
            } else {
                facts.by_email.push(profile(user));
            }
        }
        Ok(facts)
    }

    async fn link_at_sign_in(&self, link: &SignInLink<'_>) -> Result<ChangeResult> {
        self.link_at_sign_in_tx(link).await.map_err(classify)
    }

    async fn record_sign_in(&self, record: &SignInRecord<'_>) -> Result<RecordedSignIn> {
        self.record_sign_in_tx(record).await.map_err(classify)
    }

    async fn insert_sign_in_event(&self, event: &NewSignInEvent) -> Result<i64> {
        self.insert_sign_in_event_tx(event).await.map_err(classify)
    }

    async fn list_sign_in_events(
        &self,
        user_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SignInEvent>> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        let rows = client
            .query(
                "SELECT pk, at, actor, issuer, account_id, email, email_verified, situation, signed_in,
                        linked_now, user_pk, related, explanation, fix
                 FROM sign_in_events WHERE $1::bigint IS NULL OR user_pk = $1 ORDER BY pk DESC LIMIT $2",
                &[&user_pk, &limit],
            )
            .await
            .map_err(|e| classify(e.into()))?;
        rows.iter().map(sign_in_event_from).collect()
    }

    async fn insert_oidc_login(&self, login: &OidcLogin) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM oidc_logins WHERE expires_at < $1",
            &[&login.created_at],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO oidc_logins ({LOGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &login.handle_hash,
                &login.state,
                &login.nonce,
                &login.pkce_verifier,
                &login.return_to,
                &login.created_at,
                &login.expires_at,
                &login.issuer,
                &login.client_id,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_oidc_login(&self, handle_hash: &str) -> Result<Option<OidcLogin>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "DELETE FROM oidc_logins WHERE handle_hash = $1 RETURNING {LOGIN_COLUMNS}"
                ),
                &[&handle_hash],
            )
            .await?;
        row.as_ref().map(oidc_login_from).transpose()
    }
}
