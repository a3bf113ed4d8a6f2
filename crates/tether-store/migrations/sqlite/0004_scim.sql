-- tether schema, sqlite dialect: scim. Never edit an applied migration: add a new file.
-- SCIM 2.0 (RFC 7643/7644) over the application's users, and SCIM groups.

-- userName is unique regardless of case for SCIM writes. The key is Unicode lower-case,
-- computed in Rust (SQLite's lower() is ASCII-only, so no backfill here): NULL means "not yet
-- computed", and the store fills pending keys before it answers a userName lookup or checks
-- uniqueness. Any other writer that changes a username (an import) resets the key to NULL
-- through the trigger below, so a stale key never answers a lookup. The index also finds the
-- pending rows (IS NULL), so the check costs one index probe.
ALTER TABLE users ADD COLUMN username_key TEXT;
-- The SCIM attributes tether has no column for (name, phoneNumbers, the enterprise
-- extension, all e-mails, …): a JSON object, so what a client PUT or PATCHed comes back.
ALTER TABLE users ADD COLUMN scim_attributes TEXT;
ALTER TABLE users ADD COLUMN scim_created_at TEXT;
ALTER TABLE users ADD COLUMN scim_modified_at TEXT;
-- A SCIM DELETE hides the user from SCIM (404 afterwards) and keeps the row, its External ID
-- and its audit trail.
ALTER TABLE users ADD COLUMN scim_deleted_at TEXT;
CREATE INDEX users_username_key ON users (username_key);
CREATE TRIGGER users_username_key_stale AFTER UPDATE OF username ON users
WHEN NEW.username IS NOT OLD.username AND NEW.username_key IS OLD.username_key
BEGIN UPDATE users SET username_key = NULL WHERE pk = NEW.pk; END;

CREATE TABLE groups (
    pk                  INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL,
    display_name        TEXT NOT NULL,
    display_name_key    TEXT NOT NULL,     -- Unicode lower-case of display_name (Rust)
    external_id         TEXT,
    attributes          TEXT NOT NULL DEFAULT '{}',
    created_at          TEXT NOT NULL,
    modified_at         TEXT NOT NULL,
    CONSTRAINT groups_id UNIQUE (id),
    CONSTRAINT groups_display_name UNIQUE (display_name_key)
);

CREATE TABLE group_members (
    group_pk            INTEGER NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
    user_pk             INTEGER NOT NULL REFERENCES users (pk),
    PRIMARY KEY (group_pk, user_pk)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_pk);
