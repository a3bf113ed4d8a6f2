//! scim: the sqlite implementation of the `scim` units of work (see `crate::scim`).
//!
//! Writes run in one IMMEDIATE transaction (SQLite's single writer), so a read-check-write
//! (uniqueness of userName, External ID; the caller's `change` closure) sees exactly the
//! state it writes over. Pending `username_key`s (rows an import wrote or renamed) are filled
//! in Rust before any lookup or check that reads them.

use super::*;
use crate::scim::*;

const SCIM_USER_COLUMNS: &str = "u.pk, u.id, u.username, u.email, u.display_name, u.active, \
     u.external_id, u.excluded, u.scim_attributes, u.scim_created_at, u.scim_modified_at";

fn json_column(text: Option<String>) -> rusqlite::Result<serde_json::Value> {
    match text {
        None => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

fn optional_ts(text: Option<String>) -> rusqlite::Result<Option<Timestamp>> {
    text.map(|t| parse_ts(&t)).transpose()
}

fn scim_user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScimUser> {
    Ok(ScimUser {
        pk: row.get(0)?,
        id: row.get(1)?,
        username: row.get(2)?,
        email: row.get(3)?,
        display_name: row.get(4)?,
        active: row.get(5)?,
        external_id: row.get(6)?,
        excluded: row.get(7)?,
        attributes: json_column(row.get(8)?)?,
        created_at: optional_ts(row.get(9)?)?,
        modified_at: optional_ts(row.get(10)?)?,
    })
}

fn attributes_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Whether any user's `username_key` is still to be computed (one probe of its index).
fn username_keys_pending(c: &Connection) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE username_key IS NULL)")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Computes the pending `username_key`s (Unicode lower-case, in Rust).
fn fill_username_keys(c: &Connection) -> Result<u64> {
    let pending: Vec<(i64, String)> = c
        .prepare_cached("SELECT pk, username FROM users WHERE username_key IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = c.prepare_cached("UPDATE users SET username_key = ?1 WHERE pk = ?2")?;
    for (pk, username) in &pending {
        update.execute(params![name_key(username), pk])?;
    }
    Ok(pending.len() as u64)
}

fn scim_user_by_id(c: &Connection, id: &str) -> Result<Option<ScimUser>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.id = ?1 AND u.scim_deleted_at IS NULL"
    ))?
    .query_row([id], scim_user_row)
    .optional()?)
}

fn scim_user_by_pk(c: &Connection, pk: i64) -> Result<ScimUser> {
    Ok(c.prepare_cached(&format!(
        "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.pk = ?1"
    ))?
    .query_row([pk], scim_user_row)?)
}

/// Refuses a userName another visible user holds (any case), naming the holder.
fn check_username(c: &Connection, user: &ScimUserWrite, except_pk: Option<i64>) -> Result<()> {
    let holder: Option<String> = c
        .prepare_cached(
            "SELECT id FROM users WHERE username_key = ?1 AND scim_deleted_at IS NULL
             AND pk IS NOT ?2 ORDER BY pk LIMIT 1",
        )?
        .query_row(params![user.username_key, except_pk], |r| r.get(0))
        .optional()?;
    match holder {
        Some(holder) => Err(StoreError::Conflict {
            constraint: USERNAME_CONSTRAINT,
            message: format!(
                "userName '{}' is already taken by user '{holder}'",
                user.username
            ),
        }),
        None => Ok(()),
    }
}

/// Refuses an External ID any other user holds (hidden ones too), naming the holder.
fn check_external_id(c: &Connection, value: &str, except_pk: Option<i64>) -> Result<()> {
    let holder: Option<String> = c
        .prepare_cached("SELECT id FROM users WHERE external_id = ?1 AND pk IS NOT ?2")?
        .query_row(params![value, except_pk], |r| r.get(0))
        .optional()?;
    match holder {
        Some(holder) => Err(StoreError::Conflict {
            constraint: "users_external_id",
            message: format!("externalId '{value}' is already held by user '{holder}'"),
        }),
        None => Ok(()),
    }
}

fn audit_external_id(
    tx: &Transaction<'_>,
    at: &str,
    context: ScimContext<'_>,
    user_pk: i64,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<()> {
    insert_audit(
        tx,
        AuditWrite {
            at,
            actor: context.actor,
            origin: Origin::Scim,
            user_pk,
            old,
            new,
            reason: "scim",
            run_pk: None,
        },
    )
}

fn user_order(order: ScimUserOrder) -> &'static str {
    match order {
        ScimUserOrder::Pk => "u.pk",
        ScimUserOrder::Id => "u.id",
        ScimUserOrder::UserName => "u.username_key",
        ScimUserOrder::DisplayName => "u.display_name",
        ScimUserOrder::Email => "u.email_key",
        ScimUserOrder::Created => "u.scim_created_at",
        ScimUserOrder::Modified => "u.scim_modified_at",
    }
}

fn group_order(order: ScimGroupOrder) -> &'static str {
    match order {
        ScimGroupOrder::Pk => "g.pk",
        ScimGroupOrder::Id => "g.id",
        ScimGroupOrder::DisplayName => "g.display_name_key",
        ScimGroupOrder::Created => "g.created_at",
        ScimGroupOrder::Modified => "g.modified_at",
    }
}

const GROUP_COLUMNS: &str =
    "g.pk, g.id, g.display_name, g.external_id, g.attributes, g.created_at, g.modified_at";

fn group_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScimGroup> {
    Ok(ScimGroup {
        pk: row.get(0)?,
        id: row.get(1)?,
        display_name: row.get(2)?,
        external_id: row.get(3)?,
        attributes: json_column(row.get(4)?)?,
        members: Vec::new(),
        created_at: parse_ts(&row.get::<_, String>(5)?)?,
        modified_at: parse_ts(&row.get::<_, String>(6)?)?,
    })
}

fn with_members(c: &Connection, mut group: ScimGroup) -> Result<ScimGroup> {
    group.members = c
        .prepare_cached(
            "SELECT u.id, u.display_name, u.username FROM group_members AS m
             JOIN users AS u ON u.pk = m.user_pk
             WHERE m.group_pk = ?1 AND u.scim_deleted_at IS NULL ORDER BY u.id",
        )?
        .query_map([group.pk], |r| {
            let display: String = r.get(1)?;
            let username: String = r.get(2)?;
            Ok(ScimMember {
                user_id: r.get(0)?,
                display: if display.is_empty() {
                    username
                } else {
                    display
                },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(group)
}

fn groups_where(c: &Connection, condition: &str, value: &str) -> Result<Vec<ScimGroup>> {
    let groups: Vec<ScimGroup> = c
        .prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups AS g WHERE {condition} ORDER BY g.pk"
        ))?
        .query_map([value], group_row)?
        .collect::<rusqlite::Result<_>>()?;
    groups.into_iter().map(|g| with_members(c, g)).collect()
}

fn check_group_name(c: &Connection, group: &ScimGroupWrite, except_pk: Option<i64>) -> Result<()> {
    let holder: Option<String> = c
        .prepare_cached("SELECT id FROM groups WHERE display_name_key = ?1 AND pk IS NOT ?2")?
        .query_row(params![group.display_name_key, except_pk], |r| r.get(0))
        .optional()?;
    match holder {
        Some(holder) => Err(StoreError::Conflict {
            constraint: GROUP_NAME_CONSTRAINT,
            message: format!(
                "displayName '{}' is already taken by group '{holder}'",
                group.display_name
            ),
        }),
        None => Ok(()),
    }
}

/// Replaces a group's members; an unknown or hidden user id is refused by name.
fn write_members(tx: &Transaction<'_>, group_pk: i64, members: &[String]) -> Result<()> {
    tx.prepare_cached("DELETE FROM group_members WHERE group_pk = ?1")?
        .execute([group_pk])?;
    let mut find =
        tx.prepare_cached("SELECT pk FROM users WHERE id = ?1 AND scim_deleted_at IS NULL")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO group_members (group_pk, user_pk) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for member in members {
        let user_pk: Option<i64> = find.query_row([member], |r| r.get(0)).optional()?;
        let Some(user_pk) = user_pk else {
            return Err(StoreError::Invalid(format!(
                "member '{member}' is not a user"
            )));
        };
        insert.execute(params![group_pk, user_pk])?;
    }
    Ok(())
}

impl ScimStore for SqliteStore {
    async fn count_scim_users(&self) -> Result<u64> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM users WHERE scim_deleted_at IS NULL")?
                    .query_row([], |r| r.get::<_, i64>(0))? as u64,
            )
        })
    }

    async fn find_scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        self.read(|c| scim_user_by_id(c, id))
    }

    async fn find_scim_users(&self, lookups: &[ScimLookup], limit: u32) -> Result<Vec<ScimUser>> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        let by_username = lookups
            .iter()
            .any(|l| matches!(l, ScimLookup::UserNameKey(_)));
        let mut conditions = Vec::with_capacity(lookups.len());
        let mut values: Vec<&str> = Vec::with_capacity(lookups.len());
        for (n, lookup) in lookups.iter().enumerate() {
            let (column, value) = match lookup {
                ScimLookup::Id(v) => ("u.id", v),
                ScimLookup::UserNameKey(v) => ("u.username_key", v),
                ScimLookup::ExternalId(v) => ("u.external_id", v),
                ScimLookup::EmailKey(v) => ("u.email_key", v),
            };
            conditions.push(format!("{column} = ?{}", n + 2));
            values.push(value);
        }
        let sql = format!(
            "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE ({}) AND u.scim_deleted_at IS NULL
             ORDER BY u.pk LIMIT ?1",
            conditions.join(" OR ")
        );
        let query = |c: &Connection| -> Result<Vec<ScimUser>> {
            let mut statement = c.prepare_cached(&sql)?;
            let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&limit];
            parameters.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
            let rows = statement.query_map(parameters.as_slice(), scim_user_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        };
        // One read answers, unless some username keys are still to be computed (after an
        // import): then they are filled first, once.
        let found = self.read(|c| {
            if by_username && username_keys_pending(c)? {
                return Ok(None);
            }
            query(c).map(Some)
        })?;
        if let Some(found) = found {
            return Ok(found);
        }
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            fill_username_keys(&tx)?;
            tx.commit()?;
            Ok(())
        })?;
        self.read(|c| query(c))
    }

    async fn list_scim_users(&self, page: &ScimPage<ScimUserOrder>) -> Result<Vec<ScimUser>> {
        if page.order == ScimUserOrder::UserName && self.read(username_keys_pending)? {
            self.write(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                fill_username_keys(&tx)?;
                tx.commit()?;
                Ok(())
            })?;
        }
        let direction = if page.descending { "DESC" } else { "ASC" };
        let column = user_order(page.order);
        let sql = if page.order == ScimUserOrder::Pk {
            format!(
                "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.scim_deleted_at IS NULL
                 ORDER BY u.pk {direction} LIMIT ?1 OFFSET ?2"
            )
        } else {
            format!(
                "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.scim_deleted_at IS NULL
                 ORDER BY {column} {direction}, u.pk {direction} LIMIT ?1 OFFSET ?2"
            )
        };
        let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![page.limit, offset], scim_user_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn insert_scim_user(
        &self,
        id: &str,
        user: &ScimUserWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimUser> {
        let at = ts(context.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            fill_username_keys(&tx)?;
            check_username(&tx, user, None)?;
            if let Some(external_id) = &user.external_id {
                check_external_id(&tx, external_id, None)?;
            }
            let (origin, set_at) = match &user.external_id {
                Some(_) => (Some(Origin::Scim.as_str()), Some(at.as_str())),
                None => (None, None),
            };
            let pk: i64 = tx
                .prepare_cached(
                    "INSERT INTO users (id, username, username_key, email, email_key, display_name, active,
                        external_id, external_id_origin, external_id_set_at, scim_attributes,
                        scim_created_at, scim_modified_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12) RETURNING pk",
                )?
                .query_row(
                    params![
                        id,
                        user.username,
                        user.username_key,
                        user.email,
                        user.email_key,
                        user.display_name,
                        user.active,
                        user.external_id,
                        origin,
                        set_at,
                        attributes_text(&user.attributes),
                        at
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| conflict(e, id))?;
            if let Some(external_id) = &user.external_id {
                audit_external_id(&tx, &at, context, pk, None, Some(external_id))?;
            }
            let created = scim_user_by_pk(&tx, pk)?;
            tx.commit()?;
            Ok(created)
        })
    }

    async fn update_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimUser, E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<ScimUserWrite, E> + Send,
    {
        let at = ts(context.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            fill_username_keys(&tx)?;
            let Some(current) = scim_user_by_id(&tx, id)? else {
                return Err(StoreError::NotFound(format!("user '{id}'")));
            };
            let new = match change(&current) {
                Ok(new) => new,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if new.username_key != name_key(&current.username) {
                check_username(&tx, &new, Some(current.pk))?;
            }
            let external_id_changed = new.external_id != current.external_id;
            if external_id_changed {
                if let Some(external_id) = &new.external_id {
                    check_external_id(&tx, external_id, Some(current.pk))?;
                }
            }
            tx.prepare_cached(
                "UPDATE users SET username = ?1, username_key = ?2, email = ?3, email_key = ?4,
                    display_name = ?5, active = ?6, scim_attributes = ?7, scim_modified_at = ?8,
                    scim_created_at = coalesce(scim_created_at, ?8)
                 WHERE pk = ?9",
            )?
            .execute(params![
                new.username,
                new.username_key,
                new.email,
                new.email_key,
                new.display_name,
                new.active,
                attributes_text(&new.attributes),
                at,
                current.pk
            ])?;
            if external_id_changed {
                let (origin, set_at) = match &new.external_id {
                    Some(_) => (Some(Origin::Scim.as_str()), Some(at.as_str())),
                    None => (None, None),
                };
                tx.prepare_cached(
                    "UPDATE users SET external_id = ?1, external_id_origin = ?2, external_id_set_at = ?3
                     WHERE pk = ?4 AND external_id IS ?5",
                )?
                .execute(params![
                    new.external_id,
                    origin,
                    set_at,
                    current.pk,
                    current.external_id
                ])?;
                audit_external_id(
                    &tx,
                    &at,
                    context,
                    current.pk,
                    current.external_id.as_deref(),
                    new.external_id.as_deref(),
                )?;
            }
            let updated = scim_user_by_pk(&tx, current.pk)?;
            tx.commit()?;
            Ok(Ok(updated))
        })
    }

    async fn delete_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<(), E> + Send,
    {
        let at = ts(context.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(current) = scim_user_by_id(&tx, id)? else {
                return Err(StoreError::NotFound(format!("user '{id}'")));
            };
            if let Err(refusal) = check(&current) {
                return Ok(Err(refusal));
            }
            tx.prepare_cached(
                "UPDATE users SET scim_deleted_at = ?1, scim_modified_at = ?1, active = 0 WHERE pk = ?2",
            )?
            .execute(params![at, current.pk])?;
            tx.prepare_cached("DELETE FROM group_members WHERE user_pk = ?1")?
                .execute([current.pk])?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    async fn count_scim_groups(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT count(*) FROM groups")?
                .query_row([], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    async fn find_scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        self.read(|c| Ok(groups_where(c, "g.id = ?1", id)?.into_iter().next()))
    }

    async fn find_scim_groups_by_name(&self, display_name_key: &str) -> Result<Vec<ScimGroup>> {
        self.read(|c| groups_where(c, "g.display_name_key = ?1", display_name_key))
    }

    async fn list_scim_groups(&self, page: &ScimPage<ScimGroupOrder>) -> Result<Vec<ScimGroup>> {
        let direction = if page.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups AS g
             ORDER BY {} {direction}, g.pk {direction} LIMIT ?1 OFFSET ?2",
            group_order(page.order)
        );
        let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
        self.read(|c| {
            let groups: Vec<ScimGroup> = c
                .prepare_cached(&sql)?
                .query_map(params![page.limit, offset], group_row)?
                .collect::<rusqlite::Result<_>>()?;
            groups.into_iter().map(|g| with_members(c, g)).collect()
        })
    }

    async fn insert_scim_group(
        &self,
        id: &str,
        group: &ScimGroupWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimGroup> {
        let at = ts(context.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_group_name(&tx, group, None)?;
            let pk: i64 = tx
                .prepare_cached(
                    "INSERT INTO groups (id, display_name, display_name_key, external_id, attributes,
                        created_at, modified_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING pk",
                )?
                .query_row(
                    params![
                        id,
                        group.display_name,
                        group.display_name_key,
                        group.external_id,
                        attributes_text(&group.attributes).unwrap_or_else(|| "{}".to_owned()),
                        at
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| conflict(e, id))?;
            write_members(&tx, pk, &group.members)?;
            let created = groups_where(&tx, "g.pk = ?1", &pk.to_string())?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("group '{id}'")))?;
            tx.commit()?;
            Ok(created)
        })
    }

    async fn update_scim_group<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimGroup, E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<ScimGroupWrite, E> + Send,
    {
        let at = ts(context.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(current) = groups_where(&tx, "g.id = ?1", id)?.into_iter().next() else {
                return Err(StoreError::NotFound(format!("group '{id}'")));
            };
            let new = match change(&current) {
                Ok(new) => new,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if new.display_name_key != name_key(&current.display_name) {
                check_group_name(&tx, &new, Some(current.pk))?;
            }
            tx.prepare_cached(
                "UPDATE groups SET display_name = ?1, display_name_key = ?2, external_id = ?3,
                    attributes = ?4, modified_at = ?5 WHERE pk = ?6",
            )?
            .execute(params![
                new.display_name,
                new.display_name_key,
                new.external_id,
                attributes_text(&new.attributes).unwrap_or_else(|| "{}".to_owned()),
                at,
                current.pk
            ])?;
            write_members(&tx, current.pk, &new.members)?;
            let updated = groups_where(&tx, "g.pk = ?1", &current.pk.to_string())?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("group '{id}'")))?;
            tx.commit()?;
            Ok(Ok(updated))
        })
    }

    async fn delete_scim_group<E, F>(
        &self,
        id: &str,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<(), E> + Send,
    {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(current) = groups_where(&tx, "g.id = ?1", id)?.into_iter().next() else {
                return Err(StoreError::NotFound(format!("group '{id}'")));
            };
            if let Err(refusal) = check(&current) {
                return Ok(Err(refusal));
            }
            // Its memberships go with it (ON DELETE CASCADE).
            tx.prepare_cached("DELETE FROM groups WHERE pk = ?1")?
                .execute([current.pk])?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }
}
