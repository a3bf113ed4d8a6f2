//! admin: the SQLite implementation of [`crate::admin::AdminStore`].

use super::*;
use crate::admin::*;

/// Saves one settings row (the key's value, who, when).
const UPSERT_SETTING: &str =
    "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
         updated_at = excluded.updated_at, updated_by = excluded.updated_by";

fn admin_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Admin> {
    Ok(Admin {
        pk: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        created_at: parse_ts(&row.get::<_, String>(3)?)?,
    })
}

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        pk: row.get(0)?,
        name: row.get(1)?,
        scope: row.get(2)?,
        created_at: parse_ts(&row.get::<_, String>(3)?)?,
        revoked_at: row
            .get::<_, Option<String>>(4)?
            .map(|t| parse_ts(&t))
            .transpose()?,
        last_used_at: row
            .get::<_, Option<String>>(5)?
            .map(|t| parse_ts(&t))
            .transpose()?,
    })
}

fn audit_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        pk: row.get(0)?,
        at: parse_ts(&row.get::<_, String>(1)?)?,
        actor: row.get(2)?,
        origin: parse_name(&row.get::<_, String>(3)?)?,
        user_pk: row.get(4)?,
        old_value: row.get(5)?,
        new_value: row.get(6)?,
        reason: row.get(7)?,
        run_pk: row.get(8)?,
    })
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        pk: row.get(0)?,
        at: parse_ts(&row.get::<_, String>(1)?)?,
        actor: row.get(2)?,
        kind: row.get(3)?,
        subject: row.get(4)?,
        detail: row.get(5)?,
    })
}

fn insert_event_row(c: &Connection, event: &NewEvent<'_>) -> Result<()> {
    c.execute(
        "INSERT INTO events (at, actor, kind, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ts(event.at)?,
            event.actor,
            event.kind,
            event.subject,
            event.detail
        ],
    )?;
    Ok(())
}

/// Prefix matches above which a search walks users in key order instead of sorting matches.
const BROAD_SEARCH: i64 = 2_000;

const TOKEN_COLUMNS: &str = "pk, name, scope, created_at, revoked_at, last_used_at";

impl AdminStore for SqliteStore {
    async fn insert_admin(
        &self,
        username: &str,
        password_hash: &str,
        at: Timestamp,
    ) -> Result<i64> {
        let at = ts(at)?;
        self.write(|c| {
            c.query_row(
                "INSERT INTO admins (username, password_hash, created_at) VALUES (?1, ?2, ?3) RETURNING pk",
                params![username, password_hash, at],
                |r| r.get(0),
            )
            .map_err(|e| match conflict(e, username) {
                StoreError::Conflict { constraint, .. } => StoreError::Conflict {
                    constraint,
                    message: format!("an administrator named '{username}' already exists"),
                },
                other => other,
            })
        })
    }

    async fn find_admin(&self, username: &str) -> Result<Option<Admin>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT pk, username, password_hash, created_at FROM admins WHERE username = ?1",
                [username],
                admin_row,
            )
            .optional()?)
        })
    }

    async fn count_admins(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row("SELECT count(*) FROM admins", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    async fn update_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        self.write(|c| {
            let n = c.execute(
                "UPDATE admins SET password_hash = ?2 WHERE username = ?1",
                params![username, password_hash],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("administrator '{username}'")));
            }
            Ok(())
        })
    }

    async fn insert_session(&self, session: &NewSession) -> Result<()> {
        let created = ts(session.created_at)?;
        let expires = ts(session.expires_at)?;
        self.write(|c| {
            c.execute(
                "INSERT INTO sessions (id_hash, principal, is_admin, user_pk, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    session.id_hash,
                    session.principal,
                    session.is_admin,
                    session.user_pk,
                    session.csrf,
                    created,
                    expires
                ],
            )
            .map_err(|e| conflict(e, "session"))?;
            Ok(())
        })
    }

    async fn find_session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>> {
        let now = ts(now)?;
        self.read(|c| {
            Ok(c.query_row(
                "SELECT pk, principal, is_admin, user_pk, csrf, expires_at FROM sessions
                 WHERE id_hash = ?1 AND expires_at > ?2",
                params![id_hash, now],
                |row| {
                    Ok(Session {
                        pk: row.get(0)?,
                        principal: row.get(1)?,
                        is_admin: row.get(2)?,
                        user_pk: row.get(3)?,
                        csrf: row.get(4)?,
                        expires_at: parse_ts(&row.get::<_, String>(5)?)?,
                    })
                },
            )
            .optional()?)
        })
    }

    async fn delete_session(&self, id_hash: &str, now: Timestamp) -> Result<()> {
        let now = ts(now)?;
        self.write(|c| {
            c.execute(
                "DELETE FROM sessions WHERE id_hash = ?1 OR expires_at <= ?2",
                params![id_hash, now],
            )?;
            Ok(())
        })
    }

    async fn end_platform_sessions(&self) -> Result<u64> {
        self.write(|c| {
            let n = c.execute(
                "DELETE FROM sessions WHERE principal NOT LIKE 'admin:%'",
                [],
            )?;
            Ok(n as u64)
        })
    }

    async fn get_settings(&self) -> Result<Settings> {
        self.read(|c| {
            let mut statement = c.prepare_cached("SELECT key, value FROM settings")?;
            let rows = statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            settings_from_rows(rows)
        })
    }

    async fn update_settings(&self, settings: &Settings, actor: &str, at: Timestamp) -> Result<()> {
        let rows = settings_rows(settings)?;
        let at_text = ts(at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = tx
                .prepare("SELECT key, value FROM settings")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Compare with the effective settings (defaults for keys never saved).
            let before = settings_rows(&settings_from_rows(stored)?)?;
            let mut changed = Vec::new();
            for ((key, value), (_, old)) in rows.iter().zip(before.iter()) {
                if old != value {
                    tx.execute(UPSERT_SETTING, params![key, value, at_text, actor])?;
                    changed.push(format!("{key}={value}"));
                }
            }
            if !changed.is_empty() {
                insert_event_row(
                    &tx,
                    &NewEvent {
                        at,
                        actor,
                        kind: "settings_changed",
                        subject: "security",
                        detail: &changed.join(", "),
                    },
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn find_setting_document(&self, key: &str) -> Result<Option<String>> {
        check_document_key(key)?;
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                    .query_row(params![key], |r| r.get::<_, String>(0))
                    .optional()?,
            )
        })
    }

    async fn put_setting_document(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        event: &NewEvent<'_>,
    ) -> Result<bool> {
        check_document_key(key)?;
        let at_text = ts(event.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: Option<String> = tx
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?;
            if stored.as_deref() != expected {
                return Ok(false);
            }
            tx.execute(UPSERT_SETTING, params![key, value, at_text, event.actor])?;
            insert_event_row(&tx, event)?;
            tx.commit()?;
            Ok(true)
        })
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|c| {
            let mut statement =
                c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY pk"))?;
            let rows = statement.query_map([], token_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn find_token(&self, hash: &str, at: Timestamp) -> Result<Option<TokenRecord>> {
        // A read answers most calls: last_used_at is refreshed at most once a minute, so
        // authenticating an API or SCIM request rarely takes SQLite's single writer lock.
        let found = self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([hash], token_row)
            .optional()?)
        })?;
        match &found {
            None => return Ok(None),
            Some(t)
                if t.last_used_at
                    .is_some_and(|used| used > at - time::Duration::MINUTE) =>
            {
                return Ok(found)
            }
            Some(_) => {}
        }
        let at = ts(at)?;
        self.write(|c| {
            Ok(c.query_row(
                &format!(
                    "UPDATE tokens SET last_used_at = ?2 WHERE hash = ?1 AND revoked_at IS NULL
                     RETURNING {TOKEN_COLUMNS}"
                ),
                params![hash, at],
                token_row,
            )
            .optional()?)
        })
    }

    async fn revoke_token(&self, pk: i64, at: Timestamp) -> Result<()> {
        let at = ts(at)?;
        self.write(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE pk = ?1",
                params![pk, at],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("token {pk}")));
            }
            Ok(())
        })
    }

    async fn get_source_connection(&self, source_pk: i64) -> Result<SourceConnection> {
        self.read(|c| {
            c.query_row(
                "SELECT settings, secret FROM sources WHERE pk = ?1",
                [source_pk],
                |r| {
                    Ok(SourceConnection {
                        settings: r.get(0)?,
                        sealed_secret: r.get(1)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("source {source_pk}")))
        })
    }

    async fn update_source(&self, source_pk: i64, update: &SourceUpdate) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require_source(&tx, source_pk)?;
            if let Some(field) = update.external_id_field {
                tx.execute(
                    "UPDATE sources SET external_id_field = ?2 WHERE pk = ?1",
                    params![source_pk, field.as_str()],
                )?;
            }
            if let Some(link_inactive) = update.link_inactive {
                tx.execute(
                    "UPDATE sources SET link_inactive = ?2 WHERE pk = ?1",
                    params![source_pk, link_inactive],
                )?;
            }
            if let Some(settings) = &update.settings {
                tx.execute(
                    "UPDATE sources SET settings = ?2 WHERE pk = ?1",
                    params![source_pk, settings],
                )?;
            }
            if let Some(secret) = &update.sealed_secret {
                tx.execute(
                    "UPDATE sources SET secret = ?2 WHERE pk = ?1",
                    params![source_pk, secret],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users AS u WHERE u.id = ?1"),
                [id],
                user_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("user '{id}'")))
        })
    }

    async fn search_users(&self, search: &UserSearch) -> Result<Vec<UserRecord>> {
        let lower = search.query.trim().to_lowercase();
        let upper = prefix_upper(&lower);
        let exact = search.query.trim().to_owned();
        let after = search.after_pk.unwrap_or(0);
        self.read(|c| {
            // A selective query (few prefix matches) reads each arm's index range and sorts
            // the union; a broad one ("a") would sort thousands, so it walks users in key
            // order and stops at the page's end instead. Both give the same rows.
            let broad: i64 = c.prepare_cached(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM users WHERE email_key >= ?1 AND email_key < ?2 LIMIT ?3))
                      + (SELECT count(*) FROM (SELECT 1 FROM users WHERE lower(display_name) >= ?1 AND lower(display_name) < ?2 LIMIT ?3))",
            )?
            .query_row(params![lower, upper, BROAD_SEARCH], |r| r.get(0))?;
            let sql = if broad >= BROAD_SEARCH {
                format!(
                    "SELECT {USER_COLUMNS} FROM users AS u WHERE u.pk > ?4 AND (
                         (u.email_key >= ?1 AND u.email_key < ?2)
                         OR (lower(u.display_name) >= ?1 AND lower(u.display_name) < ?2)
                         OR u.username = ?3 OR u.id = ?3 OR u.external_id = ?3)
                     ORDER BY u.pk LIMIT ?5"
                )
            } else {
                format!(
                    "SELECT {USER_COLUMNS} FROM users AS u WHERE u.pk IN (
                         SELECT pk FROM users WHERE email_key >= ?1 AND email_key < ?2
                         UNION SELECT pk FROM users WHERE username = ?3
                         UNION SELECT pk FROM users WHERE lower(display_name) >= ?1 AND lower(display_name) < ?2
                         UNION SELECT pk FROM users WHERE id = ?3
                         UNION SELECT pk FROM users WHERE external_id = ?3)
                     AND u.pk > ?4 ORDER BY u.pk LIMIT ?5"
                )
            };
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(
                params![lower, upper, exact, after, search.limit],
                user_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn list_audit_page(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let origin = filter.origin.map(|o| o.as_str());
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT pk, at, actor, origin, user_pk, old_value, new_value, reason, run_pk FROM audit
                 WHERE (?1 IS NULL OR pk < ?1) AND (?2 IS NULL OR user_pk = ?2)
                   AND (?3 IS NULL OR origin = ?3) AND (?4 IS NULL OR actor = ?4)
                 ORDER BY pk DESC LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![filter.before_pk, filter.user_pk, origin, filter.actor, filter.limit],
                audit_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn set_external_id(&self, edit: &ExternalIdEdit<'_>) -> Result<ChangeResult> {
        let at = ts(edit.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(Option<String>, bool)> = tx
                .query_row(
                    "SELECT external_id, excluded FROM users WHERE pk = ?1",
                    [edit.user_pk],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((current, excluded)) = current else {
                return Ok(ChangeResult::Gone);
            };
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
                let holder: Option<i64> = tx
                    .query_row("SELECT pk FROM users WHERE external_id = ?1", [new], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(holder_pk) = holder {
                    return Ok(ChangeResult::Taken { holder_pk });
                }
            }
            tx.execute(
                "UPDATE users SET external_id = ?2, external_id_origin = ?3, external_id_set_at = ?4
                 WHERE pk = ?1",
                params![
                    edit.user_pk,
                    edit.new,
                    edit.new.map(|_| edit.origin.as_str()),
                    edit.new.map(|_| at.clone())
                ],
            )?;
            tx.execute(
                "INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                params![
                    at,
                    edit.actor,
                    edit.origin.as_str(),
                    edit.user_pk,
                    current,
                    edit.new,
                    edit.reason
                ],
            )?;
            tx.execute("DELETE FROM outcomes WHERE user_pk = ?1", [edit.user_pk])?;
            tx.commit()?;
            Ok(ChangeResult::Applied)
        })
    }

    async fn set_excluded(
        &self,
        user_pk: i64,
        excluded: bool,
        actor: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: Option<String> = tx
                .query_row("SELECT id FROM users WHERE pk = ?1", [user_pk], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(id) = id else {
                return Err(StoreError::NotFound(format!("user {user_pk}")));
            };
            let n = tx.execute(
                "UPDATE users SET excluded = ?2 WHERE pk = ?1 AND excluded <> ?2",
                params![user_pk, excluded],
            )?;
            if n > 0 {
                insert_event_row(
                    &tx,
                    &NewEvent {
                        at,
                        actor,
                        kind: if excluded {
                            "user_excluded"
                        } else {
                            "user_included"
                        },
                        subject: &id,
                        detail: reason,
                    },
                )?;
                // The stored situation no longer holds: the next run plans the user again.
                tx.execute("DELETE FROM outcomes WHERE user_pk = ?1", [user_pk])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn find_outcome(&self, source_pk: i64, user_pk: i64) -> Result<Option<StoredOutcome>> {
        self.read(|c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT situation, evidence FROM outcomes WHERE source_pk = ?1 AND user_pk = ?2",
                    params![source_pk, user_pk],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            row.map(|(situation, evidence)| {
                Ok(StoredOutcome {
                    situation: situation
                        .parse()
                        .map_err(|e: tether_core::UnknownName| StoreError::Corrupt(e.to_string()))?,
                    evidence,
                })
            })
            .transpose()
        })
    }

    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<()> {
        self.write(|c| insert_event_row(c, event))
    }

    async fn list_events(&self, before_pk: Option<i64>, limit: u32) -> Result<Vec<Event>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT pk, at, actor, kind, subject, detail FROM events
                 WHERE (?1 IS NULL OR pk < ?1) ORDER BY pk DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![before_pk, limit], event_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
