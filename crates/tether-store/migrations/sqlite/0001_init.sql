-- tether schema, SQLite dialect. Never edit an applied migration: add a new file.
-- Timestamps are RFC 3339 text in UTC. Booleans are 0/1.

CREATE TABLE users (
    pk                  INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL,
    username            TEXT NOT NULL,
    email               TEXT,              -- as given, trimmed; NULL when blank
    email_key           TEXT,              -- normalized match key; NULL when blank or invalid
    display_name        TEXT NOT NULL DEFAULT '',
    active              INTEGER NOT NULL DEFAULT 1,
    external_id         TEXT,              -- compared exactly (case-sensitive)
    external_id_origin  TEXT CHECK (external_id_origin IN ('login', 'pull', 'scim', 'manual', 'import')),
    external_id_set_at  TEXT,
    excluded            INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT users_id UNIQUE (id),
    CONSTRAINT users_external_id UNIQUE (external_id)
);
CREATE INDEX users_email_key ON users (email_key);
CREATE INDEX users_username ON users (username);

CREATE TABLE sources (
    pk                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL,
    external_id_field   TEXT NOT NULL DEFAULT 'account_id'
                        CHECK (external_id_field IN ('account_id', 'username', 'key', 'email')),
    link_inactive       INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    CONSTRAINT sources_name UNIQUE (name)
);

CREATE TABLE accounts (
    pk                  INTEGER PRIMARY KEY,
    source_pk           INTEGER NOT NULL REFERENCES sources (pk),
    account_id          TEXT NOT NULL,
    username            TEXT,
    key                 TEXT,
    email               TEXT,
    email_key           TEXT,
    display_name        TEXT NOT NULL DEFAULT '',
    active              INTEGER NOT NULL DEFAULT 1,
    account_type        TEXT NOT NULL DEFAULT 'unknown'
                        CHECK (account_type IN ('atlassian', 'app', 'customer', 'unknown')),
    CONSTRAINT accounts_source_account_id UNIQUE (source_pk, account_id)
);
CREATE INDEX accounts_email_key ON accounts (source_pk, email_key);

CREATE TABLE runs (
    pk                  INTEGER PRIMARY KEY,
    source_pk           INTEGER NOT NULL REFERENCES sources (pk),
    kind                TEXT NOT NULL,
    dry_run             INTEGER NOT NULL,
    external_id_field   TEXT NOT NULL,
    actor               TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'running',
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    summary             TEXT NOT NULL DEFAULT '{}',
    applied             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_source ON runs (source_pk, pk);

-- The latest outcome of each user against each source: only rows that change are written,
-- so a run with nothing new writes nothing here.
CREATE TABLE outcomes (
    source_pk           INTEGER NOT NULL,
    user_pk             INTEGER NOT NULL,
    situation           TEXT NOT NULL,
    evidence            TEXT NOT NULL DEFAULT '',
    run_pk              INTEGER NOT NULL,
    PRIMARY KEY (source_pk, user_pk)
) WITHOUT ROWID;
-- Most users are linked: the situation index leaves them out (a filter on `linked` walks
-- the primary key), so a million new links cost no index entries here.
CREATE INDEX outcomes_situation ON outcomes (source_pk, situation, user_pk) WHERE situation <> 'linked';

-- Append-only: every External ID change, by whom, when, old and new value, and why.
CREATE TABLE audit (
    pk                  INTEGER PRIMARY KEY,
    at                  TEXT NOT NULL,
    actor               TEXT NOT NULL,
    origin              TEXT NOT NULL,
    user_pk             INTEGER NOT NULL,
    old_value           TEXT,
    new_value           TEXT,
    reason              TEXT NOT NULL,
    run_pk              INTEGER
);
CREATE INDEX audit_user ON audit (user_pk, pk);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

CREATE TABLE tokens (
    pk                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    scope               TEXT NOT NULL CHECK (scope IN ('admin', 'scim')),
    hash                TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    revoked_at          TEXT,
    CONSTRAINT tokens_name UNIQUE (name),
    CONSTRAINT tokens_hash UNIQUE (hash)
);
