-- tether schema, postgres dialect: admin. Never edit an applied migration: add a new file.

-- Local administrators (argon2id PHC strings, never the password).
CREATE TABLE admins (
    pk                  bigserial PRIMARY KEY,
    username            text NOT NULL,
    password_hash       text NOT NULL,
    created_at          timestamptz NOT NULL,
    CONSTRAINT admins_username UNIQUE (username)
);

-- Browser sessions: only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    pk                  bigserial PRIMARY KEY,
    id_hash             text NOT NULL,
    principal           text NOT NULL,     -- 'admin:NAME' or 'user:ID'
    is_admin            boolean NOT NULL,
    user_pk             bigint,
    csrf                text NOT NULL,
    created_at          timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    CONSTRAINT sessions_id_hash UNIQUE (id_hash)
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Settings › Security and friends: one row per key, JSON values.
CREATE TABLE settings (
    key                 text PRIMARY KEY,
    value               text NOT NULL,
    updated_at          timestamptz NOT NULL,
    updated_by          text NOT NULL
);

-- Connection settings of a source (JSON) and its secret, sealed with the server's key.
ALTER TABLE sources ADD COLUMN settings text NOT NULL DEFAULT '{}';
ALTER TABLE sources ADD COLUMN secret bytea;

ALTER TABLE tokens ADD COLUMN last_used_at timestamptz;

-- Administrative events that are not External ID changes (settings, exclusions, tokens,
-- sources, sign-ins): append-only, like the audit trail.
CREATE TABLE events (
    pk                  bigserial PRIMARY KEY,
    at                  timestamptz NOT NULL,
    actor               text NOT NULL,
    kind                text NOT NULL,
    subject             text NOT NULL DEFAULT '',
    detail              text NOT NULL DEFAULT ''
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE INDEX audit_origin ON audit (origin, pk);
CREATE INDEX users_display_name_lower ON users (lower(display_name) text_pattern_ops);
