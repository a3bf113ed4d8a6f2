-- tether schema, sqlite dialect: admin. Never edit an applied migration: add a new file.

-- Local administrators (argon2id PHC strings, never the password).
CREATE TABLE admins (
    pk                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    CONSTRAINT admins_username UNIQUE (username)
);

-- Browser sessions: only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    pk                  INTEGER PRIMARY KEY,
    id_hash             TEXT NOT NULL,
    principal           TEXT NOT NULL,     -- 'admin:NAME' or 'user:ID'
    is_admin            INTEGER NOT NULL,
    user_pk             INTEGER,
    csrf                TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    CONSTRAINT sessions_id_hash UNIQUE (id_hash)
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Settings › Security and friends: one row per key, JSON values.
CREATE TABLE settings (
    key                 TEXT PRIMARY KEY,
    value               TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    updated_by          TEXT NOT NULL
) WITHOUT ROWID;

-- Connection settings of a source (JSON) and its secret, sealed with the server's key.
ALTER TABLE sources ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sources ADD COLUMN secret BLOB;

ALTER TABLE tokens ADD COLUMN last_used_at TEXT;

-- Administrative events that are not External ID changes (settings, exclusions, tokens,
-- sources, sign-ins): append-only, like the audit trail.
CREATE TABLE events (
    pk                  INTEGER PRIMARY KEY,
    at                  TEXT NOT NULL,
    actor               TEXT NOT NULL,
    kind                TEXT NOT NULL,
    subject             TEXT NOT NULL DEFAULT '',
    detail              TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

CREATE INDEX audit_origin ON audit (origin, pk);
CREATE INDEX users_display_name_lower ON users (lower(display_name));
