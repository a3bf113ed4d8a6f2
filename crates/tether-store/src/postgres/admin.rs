//! admin: the PostgreSQL implementation of [`crate::admin::AdminStore`].

use super::*;
use crate::admin::*;

/// Saves one settings row (the key's value, who, when).
const UPSERT_SETTING: &str =
    "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
         updated_at = excluded.updated_at, updated_by = excluded.updated_by";

fn token_from(row: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        pk: row.try_get(0)?,
        name: row.try_get(1)?,
        scope: row.try_get(2)?,
        created_at: row.try_get(3)?,
        revoked_at: row.try_get(4)?,
        last_used_at: row.try_get(5)?,
    })
}

fn event_from(row: &Row) -> Result<Event> {
    Ok(Event {
        pk: row.try_get(0)?,
        at: row.try_get(1)?,
        actor: row.try_get(2)?,
        kind: row.try_get(3)?,
        subject: row.try_get(4)?,
        detail: row.try_get(5)?,
    })
}

/// Prefix matches above which a search walks users in key order instead of sorting matches.
const BROAD_SEARCH: i64 = 2_000;

const TOKEN_COLUMNS: &str = "pk, name, scope, created_at, revoked_at, last_used_at";
const INSERT_EVENT: &str =
    "INSERT INTO events (at, actor, kind, subject, detail) VALUES ($1, $2, $3, $4, $5)";

/// Escapes `%`, `_` and `\` for a `LIKE` prefix pattern.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl PgStore {
    async fn admin_call<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        work.await.map_err(classify)
    }
}

impl AdminStore for PgStore {
    async fn insert_admin(
        &self,
        username: &str,
        password_hash: &str,
        at: Timestamp,
    ) -> Result<i64> {
        self.admin_call(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "INSERT INTO admins (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING pk",
                    &[&username, &password_hash, &at],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    async fn find_admin(&self, username: &str) -> Result<Option<Admin>> {
        self.admin_call(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT pk, username, password_hash, created_at FROM admins WHERE username = $1",
                    &[&username],
                )
                .await?;
            row.map(|row| {
                Ok(Admin {
                    pk: row.try_get(0)?,
                    username: row.try_get(1)?,
                    password_hash: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn count_admins(&self) -> Result<u64> {
        self.admin_call(async {
            let client = self.client().await?;
            let row = client.query_one("SELECT count(*) FROM admins", &[]).await?;
            to_u64(row.try_get(0)?, "admin count")
        })
        .await
    }

    async fn update_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        self.admin_call(async {
            let client = self.client().await?;
            let n = client
                .execute(
                    "UPDATE admins SET password_hash = $2 WHERE username = $1",
                    &[&username, &password_hash],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("administrator '{username}'")));
            }
            Ok(())
        })
        .await
    }

    async fn insert_session(&self, session: &NewSession) -> Result<()> {
        self.admin_call(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO sessions (id_hash, principal, is_admin, user_pk, csrf, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &session.id_hash,
                        &session.principal,
                        &session.is_admin,
                        &session.user_pk,
                        &session.csrf,
                        &session.created_at,
                        &session.expires_at,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>> {
        self.admin_call(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT pk, principal, is_admin, user_pk, csrf, expires_at FROM sessions
                     WHERE id_hash = $1 AND expires_at > $2",
                )
                .await?;
            let row = client.query_opt(&statement, &[&id_hash, &now]).await?;
            row.map(|row| {
                Ok(Session {
                    pk: row.try_get(0)?,
                    principal: row.try_get(1)?,
                    is_admin: row.try_get(2)?,
                    user_pk: row.try_get(3)?,
                    csrf: row.try_get(4)?,
                    expires_at: row.try_get(5)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str, now: Timestamp) -> Result<()> {
        self.admin_call(async {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM sessions WHERE id_hash = $1 OR expires_at <= $2",
                    &[&id_hash, &now],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn end_platform_sessions(&self) -> Result<u64> {
        self.admin_call(async {
            let client = self.client().await?;
            Ok(client
                .execute(
                    "DELETE FROM sessions WHERE principal NOT LIKE 'admin:%'",
                    &[],
                )
                .await?)
        })
        .await
    }

    async fn get_settings(&self) -> Result<Settings> {
        self.admin_call(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT key, value FROM settings")
                .await?;
            let rows = client.query(&statement, &[]).await?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
                .collect::<Result<Vec<_>>>()?;
            settings_from_rows(rows)
        })
        .await
    }

    async fn update_settings(&self, settings: &Settings, actor: &str, at: Timestamp) -> Result<()> {
        let rows = settings_rows(settings)?;
        self.admin_call(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // One writer at a time, so the event names exactly what this save changed.
            tx.execute("LOCK TABLE settings IN SHARE ROW EXCLUSIVE MODE", &[])
                .await?;
            let stored = tx
                .query("SELECT key, value FROM settings", &[])
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
                .collect::<Result<Vec<_>>>()?;
            // Compare with the effective settings (defaults for keys never saved).
            let before = settings_rows(&settings_from_rows(stored)?)?;
            let mut changed = Vec::new();
            for ((key, value), (_, old)) in rows.iter().zip(before.iter()) {
                if old != value {
                    tx.execute(UPSERT_SETTING, &[key, value, &at, &actor])
                        .await?;
                    changed.push(format!("{key}={value}"));
                }
            }
            if !changed.is_empty() {
                let detail = changed.join(", ");
                tx.execute(
                    INSERT_EVENT,
                    &[&at, &actor, &"settings_changed", &"security", &detail],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn find_setting_document(&self, key: &str) -> Result<Option<String>> {
        check_document_key(key)?;
        self.admin_call(async {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
                .await?;
            Ok(row.map(|r| r.try_get::<_, String>(0)).transpose()?)
        })
        .await
    }

    async fn put_setting_document(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        event: &NewEvent<'_>,
    ) -> Result<bool> {
        check_document_key(key)?;
        self.admin_call(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Serialize with other saves: a missing row cannot be locked with FOR UPDATE.
            tx.execute("LOCK TABLE settings IN SHARE ROW EXCLUSIVE MODE", &[])
                .await?;
            let stored: Option<String> = tx
                .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            if stored.as_deref() != expected {
                return Ok(false);
            }
            tx.execute(UPSERT_SETTING, &[&key, &value, &event.at, &event.actor])
                .await?;
            tx.execute(
                INSERT_EVENT,
                &[
                    &event.at,
                    &event.actor,
                    &event.kind,
                    &event.subject,
                    &event.detail,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.admin_call(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY pk"),
                    &[],
                )
                .await?;
            rows.iter().map(token_from).collect()
        })
        .await
    }

    async fn find_token(&self, hash: &str, at: Timestamp) -> Result<Option<TokenRecord>> {
        self.admin_call(async {
            let client = self.client().await?;
            // A read answers most calls: last_used_at is refreshed at most once a minute, so
            // authenticating an API or SCIM request is not a write (and a WAL flush) each time.
            let read = client
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL"
                ))
                .await?;
            let found = match client.query_opt(&read, &[&hash]).await? {
                None => return Ok(None),
                Some(row) => token_from(&row)?,
            };
            if found
                .last_used_at
                .is_some_and(|used| used > at - time::Duration::MINUTE)
            {
                return Ok(Some(found));
            }
            let statement = client
                .prepare_cached(&format!(
                    "UPDATE tokens SET last_used_at = $2 WHERE hash = $1 AND revoked_at IS NULL
                     RETURNING {TOKEN_COLUMNS}"
                ))
                .await?;
            let row = client.query_opt(&statement, &[&hash, &at]).await?;
            row.as_ref().map(token_from).transpose()
        })
        .await
    }

    async fn revoke_token(&self, pk: i64, at: Timestamp) -> Result<()> {
        self.admin_call(async {
            let client = self.client().await?;
            let n = client
                .execute(
                    "UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE pk = $1",
                    &[&pk, &at],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("token {pk}")));
            }
            Ok(())
        })
        .await
    }

    async fn get_source_connection(&self, source_pk: i64) -> Result<SourceConnection> {
        self.admin_call(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT settings, secret FROM sources WHERE pk = $1",
                    &[&source_pk],
                )
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("source {source_pk}")))?;
            Ok(SourceConnection {
                settings: row.try_get(0)?,
                sealed_secret: row.try_get(1)?,
            })
        })
        .await
    }

    async fn update_source(&self, source_pk: i64, update: &SourceUpdate) -> Result<()> {
        self.admin_call(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let found = tx
                .query_opt(
                    "SELECT 1 FROM sources WHERE pk = $1 FOR UPDATE",
                    &[&source_pk],
                )
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("source {source_pk}")));
            }
            if let Some(field) = update.external_id_field {
                tx.execute(
                    "UPDATE sources SET external_id_field = $2 WHERE pk = $1",
                    &[&source_pk, &field.as_str()],
                )
                .await?;
            }
            if let Some(link_inactive) = update.link_inactive {
                tx.execute(
                    "UPDATE sources SET link_inactive = $2 WHERE pk = $1",
                    &[&source_pk, &link_inactive],
                )
                .await?;
            }
            if let Some(settings) = &update.settings {
                tx.execute(
                    "UPDATE sources SET settings = $2 WHERE pk = $1",
                    &[&source_pk, settings],
                )
                .await?;
            }
            if let Some(secret) = &update.sealed_secret {
                tx.execute(
                    "UPDATE sources SET secret = $2 WHERE pk = $1",
                    &[&source_pk, secret],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        self.admin_call(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
                ))
                .await?;
            let row = client
                .query_opt(&statement, &[&id])
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user '{id}'")))?;
            user_from(&row)
        })
        .await
    }

    async fn search_users(&self, search: &UserSearch) -> Result<Vec<UserRecord>> {
        let lower = search.query.trim().to_lowercase();
        let pattern = like_prefix(&lower);
        let exact = search.query.trim().to_owned();
        let after = search.after_pk.unwrap_or(0);
        let limit = i64::from(search.limit);
        self.admin_call(async {
            let client = self.client().await?;
            // As on SQLite: sort the union of index ranges when few users match, walk users
            // in key order when many do. Both give the same rows.
            let count = client
                .prepare_cached(
                    "SELECT (SELECT count(*) FROM (SELECT 1 FROM users WHERE email_key LIKE $1 LIMIT $2) a)
                          + (SELECT count(*) FROM (SELECT 1 FROM users WHERE lower(display_name) LIKE $1 LIMIT $2) b)",
                )
                .await?;
            let broad: i64 = client
                .query_one(&count, &[&pattern, &BROAD_SEARCH])
                .await?
                .try_get(0)?;
            let sql = if broad >= BROAD_SEARCH {
                format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.pk > $3 AND (
                         u.email_key LIKE $1 OR lower(u.display_name) LIKE $1
                         OR u.username = $2 OR u.id = $2 OR u.external_id = $2)
                     ORDER BY u.pk LIMIT $4"
                )
            } else {
                format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.pk IN (
                         SELECT pk FROM users WHERE email_key LIKE $1
                         UNION SELECT pk FROM users WHERE username = $2
                         UNION SELECT pk FROM users WHERE lower(display_name) LIKE $1
                         UNION SELECT pk FROM users WHERE id = $2
                         UNION SELECT pk FROM users WHERE external_id = $2)
                     AND u.pk > $3 ORDER BY u.pk LIMIT $4"
                )
            };
            let statement = client.prepare_cached(&sql).await?;
            let rows = client
                .query(&statement, &[&pattern, &exact, &after, &limit])
                .await?;
            rows.iter().map(user_from).collect()
        })
        .await
    }

    async fn list_audit_page(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let origin = filter.origin.map(|o| o.as_str().to_owned());
        let limit = i64::from(filter.limit);
        self.admin_call(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit
                     WHERE ($1::bigint IS NULL OR pk < $1) AND ($2::bigint IS NULL OR user_pk = $2)
                       AND ($3::text IS NULL OR origin = $3) AND ($4::text IS NULL OR actor = $4)
                     ORDER BY pk DESC LIMIT $5"
                ))
                .await?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &filter.before_pk,
                        &filter.user_pk,
                        &origin,
                        &filter.actor,
                        &limit,
                    ],
                )
                .await?;
            rows.iter().map(audit_from).collect()
        })
        .await
    }

    async fn set_external_id(&self, edit: &ExternalIdEdit<'_>) -> Result<ChangeResult> {
        self.admin_call(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT external_id, excluded FROM users WHERE pk = $1 FOR UPDATE",
                    &[&edit.user_pk],
                )
                .await?;
            let Some(row) = row else {
                return Ok(ChangeResult::Gone);
            };
            let current: Option<String> = row.try_get(0)?;
            let excluded: bool = row.try_get(1)?;
            if excluded {
                return Ok(ChangeResult::Excluded);
            }
            if current.as_deref() != edit.expected {
                return Ok(match current {
                    Some(value) if Some(value.as_str()) == edit.new => ChangeResult::AlreadySet,
                    None if edit.new.is_none() => ChangeResult::AlreadySet,
                    other => ChangeResult::Changed {
                        current: other.unwrap_or_default(),
                    },
                });
            }
            if current.as_deref() == edit.new {
                return Ok(ChangeResult::AlreadySet);
            }
            if let Some(new) = edit.new {
                let holder = tx
                    .query_opt("SELECT pk FROM users WHERE external_id = $1", &[&new])
                    .await?;
                if let Some(holder) = holder {
                    return Ok(ChangeResult::Taken {
                        holder_pk: holder.try_get(0)?,
                    });
                }
            }
            let origin = edit.new.map(|_| edit.origin.as_str());
            let set_at = edit.new.map(|_| edit.at);
            let updated = tx
                .execute(
                    "UPDATE users SET external_id = $2, external_id_origin = $3, external_id_set_at = $4
                     WHERE pk = $1",
                    &[&edit.user_pk, &edit.new, &origin, &set_at],
                )
                .await;
            if let Err(err) = updated {
                // A concurrent writer took the value between the check and the write.
                if let Some(db) = err.as_db_error() {
                    if *db.code() == SqlState::UNIQUE_VIOLATION {
                        drop(tx);
                        let holder = client
                            .query_opt(
                                "SELECT pk FROM users WHERE external_id = $1",
                                &[&edit.new],
                            )
                            .await?;
                        if let Some(holder) = holder {
                            return Ok(ChangeResult::Taken {
                                holder_pk: holder.try_get(0)?,
                            });
                        }
                    }
                }
                return Err(StoreError::Postgres(err));
            }
            tx.execute(
                "INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
                &[
                    &edit.at,
                    &edit.actor,
                    &edit.origin.as_str(),
                    &edit.user_pk,
                    &current,
                    &edit.new,
                    &edit.reason,
                ],
            )
            .await?;
            tx.execute("DELETE FROM outcomes WHERE user_pk = $1", &[&edit.user_pk])
                .await?;
            tx.commit().await?;
            Ok(ChangeResult::Applied)
        })
        .await
    }

    async fn set_excluded(
        &self,
        user_pk: i64,
        excluded: bool,
        actor: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        self.admin_call(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT id, excluded FROM users WHERE pk = $1 FOR UPDATE",
                    &[&user_pk],
                )
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user {user_pk}")))?;
            let id: String = row.try_get(0)?;
            let was: bool = row.try_get(1)?;
            if was != excluded {
                tx.execute(
                    "UPDATE users SET excluded = $2 WHERE pk = $1",
                    &[&user_pk, &excluded],
                )
                .await?;
                let kind = if excluded {
                    "user_excluded"
                } else {
                    "user_included"
                };
                tx.execute(INSERT_EVENT, &[&at, &actor, &kind, &id, &reason])
                    .await?;
                tx.execute("DELETE FROM outcomes WHERE user_pk = $1", &[&user_pk])
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn find_outcome(&self, source_pk: i64, user_pk: i64) -> Result<Option<StoredOutcome>> {
        self.admin_call(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT situation, evidence FROM outcomes WHERE source_pk = $1 AND user_pk = $2",
                    &[&source_pk, &user_pk],
                )
                .await?;
            row.map(|row| {
                Ok(StoredOutcome {
                    situation: parse_name(row.try_get(0)?)?,
                    evidence: row.try_get(1)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<()> {
        self.admin_call(async {
            let client = self.client().await?;
            client
                .execute(
                    INSERT_EVENT,
                    &[
                        &event.at,
                        &event.actor,
                        &event.kind,
                        &event.subject,
                        &event.detail,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn list_events(&self, before_pk: Option<i64>, limit: u32) -> Result<Vec<Event>> {
        let limit = i64::from(limit);
        self.admin_call(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT pk, at, actor, kind, subject, detail FROM events
                     WHERE ($1::bigint IS NULL OR pk < $1) ORDER BY pk DESC LIMIT $2",
                    &[&before_pk, &limit],
                )
                .await?;
            rows.iter().map(event_from).collect()
        })
        .await
    }
}
