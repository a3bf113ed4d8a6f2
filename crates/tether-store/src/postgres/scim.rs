//! scim: the postgres implementation of the `scim` units of work (see `crate::scim`).
//!
//! SCIM writes take one transaction-scoped advisory lock, so two replicas creating the same
//! userName (in different case) or group displayName cannot both pass the uniqueness check;
//! the row itself is read `FOR UPDATE` before the caller's `change` closure sees it. SCIM
//! write rates are those of a provisioning client, so one lock costs nothing measurable.

use super::*;
use crate::scim::*;

/// The advisory lock that serializes SCIM writes ("scim" in ASCII).
const SCIM_LOCK: i64 = 0x7363_696d;

const SCIM_USER_COLUMNS: &str = "u.pk, u.id, u.username, u.email, u.display_name, u.active, \
     u.external_id, u.excluded, u.scim_attributes, u.scim_created_at, u.scim_modified_at";

fn scim_user_from(row: &Row) -> Result<ScimUser> {
    let attributes: Option<serde_json::Value> = row.try_get(8)?;
    Ok(ScimUser {
        pk: row.try_get(0)?,
        id: row.try_get(1)?,
        username: row.try_get(2)?,
        email: row.try_get(3)?,
        display_name: row.try_get(4)?,
        active: row.try_get(5)?,
        external_id: row.try_get(6)?,
        excluded: row.try_get(7)?,
        attributes: attributes.unwrap_or(serde_json::Value::Null),
        created_at: row.try_get(9)?,
        modified_at: row.try_get(10)?,
    })
}

fn attributes_param(value: &serde_json::Value) -> Option<&serde_json::Value> {
    match value {
        serde_json::Value::Null => None,
        other => Some(other),
    }
}

const GROUP_COLUMNS: &str =
    "g.pk, g.id, g.display_name, g.external_id, g.attributes, g.created_at, g.modified_at";

fn group_from(row: &Row) -> Result<ScimGroup> {
    Ok(ScimGroup {
        pk: row.try_get(0)?,
        id: row.try_get(1)?,
        display_name: row.try_get(2)?,
        external_id: row.try_get(3)?,
        attributes: row.try_get(4)?,
        members: Vec::new(),
        created_at: row.try_get(5)?,
        modified_at: row.try_get(6)?,
    })
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

/// Computes the pending `username_key`s (Unicode lower-case, in Rust), in one statement.
async fn fill_username_keys(client: &impl deadpool_postgres::GenericClient) -> Result<()> {
    let pending = client
        .query(
            "SELECT pk, username FROM users WHERE username_key IS NULL",
            &[],
        )
        .await?;
    if pending.is_empty() {
        return Ok(());
    }
    let mut pks = Vec::with_capacity(pending.len());
    let mut keys = Vec::with_capacity(pending.len());
    for row in &pending {
        pks.push(row.try_get::<_, i64>(0)?);
        keys.push(name_key(row.try_get::<_, &str>(1)?));
    }
    client
        .execute(
            "UPDATE users SET username_key = k.key
             FROM unnest($1::bigint[], $2::text[]) AS k(pk, key) WHERE users.pk = k.pk",
            &[&pks, &keys],
        )
        .await?;
    Ok(())
}

async fn username_keys_pending(client: &impl deadpool_postgres::GenericClient) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users WHERE username_key IS NULL)",
            &[],
        )
        .await?
        .try_get(0)?)
}

async fn check_username(
    tx: &Transaction<'_>,
    user: &ScimUserWrite,
    except_pk: Option<i64>,
) -> Result<()> {
    let holder = tx
        .query_opt(
            "SELECT id FROM users WHERE username_key = $1 AND scim_deleted_at IS NULL
             AND pk IS DISTINCT FROM $2 ORDER BY pk LIMIT 1",
            &[&user.username_key, &except_pk],
        )
        .await?;
    match holder {
        Some(row) => Err(StoreError::Conflict {
            constraint: USERNAME_CONSTRAINT,
            message: format!(
                "userName '{}' is already taken by user '{}'",
                user.username,
                row.try_get::<_, String>(0)?
            ),
        }),
        None => Ok(()),
    }
}

async fn check_external_id(
    tx: &Transaction<'_>,
    value: &str,
    except_pk: Option<i64>,
) -> Result<()> {
    let holder = tx
        .query_opt(
            "SELECT id FROM users WHERE external_id = $1 AND pk IS DISTINCT FROM $2",
            &[&value, &except_pk],
        )
        .await?;
    match holder {
        Some(row) => Err(StoreError::Conflict {
            constraint: "users_external_id",
            message: format!(
                "externalId '{value}' is already held by user '{}'",
                row.try_get::<_, String>(0)?
            ),
        }),
        None => Ok(()),
    }
}

async fn audit_external_id(
    tx: &Transaction<'_>,
    context: ScimContext<'_>,
    user_pk: i64,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason)
         VALUES ($1, $2, $3, $4, $5, $6, 'scim')",
        &[
            &context.at,
            &context.actor,
            &Origin::Scim.as_str(),
            &user_pk,
            &old,
            &new,
        ],
    )
    .await?;
    Ok(())
}

async fn scim_user_by_id(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    lock: bool,
) -> Result<Option<ScimUser>> {
    let sql = format!(
        "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.id = $1 AND u.scim_deleted_at IS NULL{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| scim_user_from(&row))
        .transpose()
}

async fn scim_user_by_pk(tx: &Transaction<'_>, pk: i64) -> Result<ScimUser> {
    let row = tx
        .query_one(
            &format!("SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.pk = $1"),
            &[&pk],
        )
        .await?;
    scim_user_from(&row)
}

async fn with_members(
    client: &impl deadpool_postgres::GenericClient,
    mut group: ScimGroup,
) -> Result<ScimGroup> {
    let rows = client
        .query(
            "SELECT u.id, u.display_name, u.username FROM group_members AS m
             JOIN users AS u ON u.pk = m.user_pk
             WHERE m.group_pk = $1 AND u.scim_deleted_at IS NULL ORDER BY u.id",
            &[&group.pk],
        )
        .await?;
    group.members = rows
        .iter()
        .map(|r| {
            let display: String = r.try_get(1)?;
            let username: String = r.try_get(2)?;
            Ok(ScimMember {
                user_id: r.try_get(0)?,
                display: if display.is_empty() {
                    username
                } else {
                    display
                },
            })
        })
        .collect::<Result<_>>()?;
    Ok(group)
}

async fn groups_where(
    client: &impl deadpool_postgres::GenericClient,
    condition: &str,
    value: &(dyn tokio_postgres::types::ToSql + Sync),
    lock: bool,
) -> Result<Vec<ScimGroup>> {
    let rows = client
        .query(
            &format!(
                "SELECT {GROUP_COLUMNS} FROM groups AS g WHERE {condition} ORDER BY g.pk{}",
                if lock { " FOR UPDATE" } else { "" }
            ),
            &[value],
        )
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in &rows {
        groups.push(with_members(client, group_from(row)?).await?);
    }
    Ok(groups)
}

async fn check_group_name(
    tx: &Transaction<'_>,
    group: &ScimGroupWrite,
    except_pk: Option<i64>,
) -> Result<()> {
    let holder = tx
        .query_opt(
            "SELECT id FROM groups WHERE display_name_key = $1 AND pk IS DISTINCT FROM $2",
            &[&group.display_name_key, &except_pk],
        )
        .await?;
    match holder {
        Some(row) => Err(StoreError::Conflict {
            constraint: GROUP_NAME_CONSTRAINT,
            message: format!(
                "displayName '{}' is already taken by group '{}'",
                group.display_name,
                row.try_get::<_, String>(0)?
            ),
        }),
        None => Ok(()),
    }
}

async fn write_members(tx: &Transaction<'_>, group_pk: i64, members: &[String]) -> Result<()> {
    tx.execute(
        "DELETE FROM group_members WHERE group_pk = $1",
        &[&group_pk],
    )
    .await?;
    if members.is_empty() {
        return Ok(());
    }
    let found = tx
        .query(
            "SELECT id, pk FROM users WHERE id = ANY($1) AND scim_deleted_at IS NULL",
            &[&members],
        )
        .await?;
    let mut pks = Vec::with_capacity(found.len());
    let mut ids = HashSet::with_capacity(found.len());
    for row in &found {
        ids.insert(row.try_get::<_, String>(0)?);
        pks.push(row.try_get::<_, i64>(1)?);
    }
    if let Some(missing) = members.iter().find(|m| !ids.contains(*m)) {
        return Err(StoreError::Invalid(format!(
            "member '{missing}' is not a user"
        )));
    }
    tx.execute(
        "INSERT INTO group_members (group_pk, user_pk) SELECT $1, unnest($2::bigint[])
         ON CONFLICT DO NOTHING",
        &[&group_pk, &pks],
    )
    .await?;
    Ok(())
}

impl PgStore {
    async fn begin_scim_write<'c>(
        client: &'c mut deadpool_postgres::Client,
    ) -> Result<Transaction<'c>> {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCIM_LOCK])
            .await?;
        Ok(tx)
    }

    async fn find_scim_users_tx(
        &self,
        lookups: &[ScimLookup],
        limit: u32,
    ) -> Result<Vec<ScimUser>> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        let by_username = lookups
            .iter()
            .any(|l| matches!(l, ScimLookup::UserNameKey(_)));
        let mut client = self.client().await?;
        if by_username && username_keys_pending(&client).await? {
            let tx = Self::begin_scim_write(&mut client).await?;
            fill_username_keys(&tx).await?;
            tx.commit().await?;
        }
        let mut conditions = Vec::with_capacity(lookups.len());
        let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        let limit = i64::from(limit);
        values.push(&limit);
        for (n, lookup) in lookups.iter().enumerate() {
            let (column, value) = match lookup {
                ScimLookup::Id(v) => ("u.id", v),
                ScimLookup::UserNameKey(v) => ("u.username_key", v),
                ScimLookup::ExternalId(v) => ("u.external_id", v),
                ScimLookup::EmailKey(v) => ("u.email_key", v),
            };
            conditions.push(format!("{column} = ${}", n + 2));
            values.push(value);
        }
        let sql = format!(
            "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE ({}) AND u.scim_deleted_at IS NULL
             ORDER BY u.pk LIMIT $1",
            conditions.join(" OR ")
        );
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &values).await?;
        rows.iter().map(scim_user_from).collect()
    }

    async fn list_scim_users_tx(&self, page: &ScimPage<ScimUserOrder>) -> Result<Vec<ScimUser>> {
        let mut client = self.client().await?;
        if page.order == ScimUserOrder::UserName && username_keys_pending(&client).await? {
            let tx = Self::begin_scim_write(&mut client).await?;
            fill_username_keys(&tx).await?;
            tx.commit().await?;
        }
        let direction = if page.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.scim_deleted_at IS NULL
             ORDER BY {} {direction}, u.pk {direction} LIMIT $1 OFFSET $2",
            user_order(page.order)
        );
        let offset = to_i64(page.offset, "startIndex")?;
        let rows = client
            .query(&sql, &[&i64::from(page.limit), &offset])
            .await?;
        rows.iter().map(scim_user_from).collect()
    }

    async fn insert_scim_user_tx(
        &self,
        id: &str,
        user: &ScimUserWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimUser> {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        fill_username_keys(&tx).await?;
        check_username(&tx, user, None).await?;
        if let Some(external_id) = &user.external_id {
            check_external_id(&tx, external_id, None).await?;
        }
        let (origin, set_at) = match &user.external_id {
            Some(_) => (Some(Origin::Scim.as_str()), Some(context.at)),
            None => (None, None),
        };
        let row = tx
            .query_one(
                "INSERT INTO users (id, username, username_key, email, email_key, display_name, active,
                    external_id, external_id_origin, external_id_set_at, scim_attributes,
                    scim_created_at, scim_modified_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING pk",
                &[
                    &id,
                    &user.username,
                    &user.username_key,
                    &user.email,
                    &user.email_key,
                    &user.display_name,
                    &user.active,
                    &user.external_id,
                    &origin,
                    &set_at,
                    &attributes_param(&user.attributes),
                    &context.at,
                ],
            )
            .await?;
        let pk: i64 = row.try_get(0)?;
        if let Some(external_id) = &user.external_id {
            audit_external_id(&tx, context, pk, None, Some(external_id)).await?;
        }
        let created = scim_user_by_pk(&tx, pk).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn update_scim_user_tx<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimUser, E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<ScimUserWrite, E> + Send,
    {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        fill_username_keys(&tx).await?;
        let Some(current) = scim_user_by_id(&tx, id, true).await? else {
            return Err(StoreError::NotFound(format!("user '{id}'")));
        };
        let new = match change(&current) {
            Ok(new) => new,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if new.username_key != name_key(&current.username) {
            check_username(&tx, &new, Some(current.pk)).await?;
        }
        let external_id_changed = new.external_id != current.external_id;
        if external_id_changed {
            if let Some(external_id) = &new.external_id {
                check_external_id(&tx, external_id, Some(current.pk)).await?;
            }
        }
        tx.execute(
            "UPDATE users SET username = $1, username_key = $2, email = $3, email_key = $4,
                display_name = $5, active = $6, scim_attributes = $7, scim_modified_at = $8,
                scim_created_at = coalesce(scim_created_at, $8)
             WHERE pk = $9",
            &[
                &new.username,
                &new.username_key,
                &new.email,
                &new.email_key,
                &new.display_name,
                &new.active,
                &attributes_param(&new.attributes),
                &context.at,
                &current.pk,
            ],
        )
        .await?;
        if external_id_changed {
            let (origin, set_at) = match &new.external_id {
                Some(_) => (Some(Origin::Scim.as_str()), Some(context.at)),
                None => (None, None),
            };
            tx.execute(
                "UPDATE users SET external_id = $1, external_id_origin = $2, external_id_set_at = $3
                 WHERE pk = $4 AND external_id IS NOT DISTINCT FROM $5",
                &[
                    &new.external_id,
                    &origin,
                    &set_at,
                    &current.pk,
                    &current.external_id,
                ],
            )
            .await?;
            audit_external_id(
                &tx,
                context,
                current.pk,
                current.external_id.as_deref(),
                new.external_id.as_deref(),
            )
            .await?;
        }
        let updated = scim_user_by_pk(&tx, current.pk).await?;
        tx.commit().await?;
        Ok(Ok(updated))
    }

    async fn delete_scim_user_tx<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<(), E> + Send,
    {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        let Some(current) = scim_user_by_id(&tx, id, true).await? else {
            return Err(StoreError::NotFound(format!("user '{id}'")));
        };
        if let Err(refusal) = check(&current) {
            return Ok(Err(refusal));
        }
        tx.execute(
            "UPDATE users SET scim_deleted_at = $1, scim_modified_at = $1, active = false WHERE pk = $2",
            &[&context.at, &current.pk],
        )
        .await?;
        tx.execute(
            "DELETE FROM group_members WHERE user_pk = $1",
            &[&current.pk],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn list_scim_groups_tx(&self, page: &ScimPage<ScimGroupOrder>) -> Result<Vec<ScimGroup>> {
        let client = self.client().await?;
        let direction = if page.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups AS g
             ORDER BY {} {direction}, g.pk {direction} LIMIT $1 OFFSET $2",
            group_order(page.order)
        );
        let offset = to_i64(page.offset, "startIndex")?;
        let rows = client
            .query(&sql, &[&i64::from(page.limit), &offset])
            .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            groups.push(with_members(&client, group_from(row)?).await?);
        }
        Ok(groups)
    }

    async fn insert_scim_group_tx(
        &self,
        id: &str,
        group: &ScimGroupWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimGroup> {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        check_group_name(&tx, group, None).await?;
        let empty = serde_json::json!({});
        let row = tx
            .query_one(
                "INSERT INTO groups (id, display_name, display_name_key, external_id, attributes,
                    created_at, modified_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING pk",
                &[
                    &id,
                    &group.display_name,
                    &group.display_name_key,
                    &group.external_id,
                    &attributes_param(&group.attributes).unwrap_or(&empty),
                    &context.at,
                ],
            )
            .await?;
        let pk: i64 = row.try_get(0)?;
        write_members(&tx, pk, &group.members).await?;
        let created = groups_where(&tx, "g.pk = $1", &pk, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound(format!("group '{id}'")))?;
        tx.commit().await?;
        Ok(created)
    }

    async fn update_scim_group_tx<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimGroup, E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<ScimGroupWrite, E> + Send,
    {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        let Some(current) = groups_where(&tx, "g.id = $1", &id, true)
            .await?
            .into_iter()
            .next()
        else {
            return Err(StoreError::NotFound(format!("group '{id}'")));
        };
        let new = match change(&current) {
            Ok(new) => new,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if new.display_name_key != name_key(&current.display_name) {
            check_group_name(&tx, &new, Some(current.pk)).await?;
        }
        let empty = serde_json::json!({});
        tx.execute(
            "UPDATE groups SET display_name = $1, display_name_key = $2, external_id = $3,
                attributes = $4, modified_at = $5 WHERE pk = $6",
            &[
                &new.display_name,
                &new.display_name_key,
                &new.external_id,
                &attributes_param(&new.attributes).unwrap_or(&empty),
                &context.at,
                &current.pk,
            ],
        )
        .await?;
        write_members(&tx, current.pk, &new.members).await?;
        let updated = groups_where(&tx, "g.pk = $1", &current.pk, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound(format!("group '{id}'")))?;
        tx.commit().await?;
        Ok(Ok(updated))
    }

    async fn delete_scim_group_tx<E, F>(
        &self,
        id: &str,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<(), E> + Send,
    {
        let mut client = self.client().await?;
        let tx = Self::begin_scim_write(&mut client).await?;
        let Some(current) = groups_where(&tx, "g.id = $1", &id, true)
            .await?
            .into_iter()
            .next()
        else {
            return Err(StoreError::NotFound(format!("group '{id}'")));
        };
        if let Err(refusal) = check(&current) {
            return Ok(Err(refusal));
        }
        tx.execute("DELETE FROM groups WHERE pk = $1", &[&current.pk])
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

impl ScimStore for PgStore {
    async fn count_scim_users(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM users WHERE scim_deleted_at IS NULL",
                &[],
            )
            .await?;
        to_u64(row.try_get(0)?, "user count")
    }

    async fn find_scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SCIM_USER_COLUMNS} FROM users AS u WHERE u.id = $1 AND u.scim_deleted_at IS NULL"
            ))
            .await?;
        client
            .query_opt(&statement, &[&id])
            .await?
            .map(|row| scim_user_from(&row))
            .transpose()
    }

    async fn find_scim_users(&self, lookups: &[ScimLookup], limit: u32) -> Result<Vec<ScimUser>> {
        self.find_scim_users_tx(lookups, limit)
            .await
            .map_err(classify)
    }

    async fn list_scim_users(&self, page: &ScimPage<ScimUserOrder>) -> Result<Vec<ScimUser>> {
        self.list_scim_users_tx(page).await.map_err(classify)
    }

    async fn insert_scim_user(
        &self,
        id: &str,
        user: &ScimUserWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimUser> {
        self.insert_scim_user_tx(id, user, context)
            .await
            .map_err(classify)
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
        self.update_scim_user_tx(id, context, change)
            .await
            .map_err(classify)
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
        self.delete_scim_user_tx(id, context, check)
            .await
            .map_err(classify)
    }

    async fn count_scim_groups(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client.query_one("SELECT count(*) FROM groups", &[]).await?;
        to_u64(row.try_get(0)?, "group count")
    }

    async fn find_scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        let client = self.client().await?;
        Ok(groups_where(&client, "g.id = $1", &id, false)
            .await?
            .into_iter()
            .next())
    }

    async fn find_scim_groups_by_name(&self, display_name_key: &str) -> Result<Vec<ScimGroup>> {
        let client = self.client().await?;
        groups_where(&client, "g.display_name_key = $1", &display_name_key, false).await
    }

    async fn list_scim_groups(&self, page: &ScimPage<ScimGroupOrder>) -> Result<Vec<ScimGroup>> {
        self.list_scim_groups_tx(page).await.map_err(classify)
    }

    async fn insert_scim_group(
        &self,
        id: &str,
        group: &ScimGroupWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimGroup> {
        self.insert_scim_group_tx(id, group, context)
            .await
            .map_err(classify)
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
        self.update_scim_group_tx(id, context, change)
            .await
            .map_err(classify)
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
        self.delete_scim_group_tx(id, check).await.map_err(classify)
    }
}
