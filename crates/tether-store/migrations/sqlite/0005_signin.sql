-- tether schema, sqlite dialect: signin. Never edit an applied migration: add a new file.

-- Every sign-in decision, accepted or refused: the sign-in part of the audit trail. A refusal
-- often concerns no profile at all (no match, unverified e-mail), so it cannot live in
-- `audit` (whose user_pk is NOT NULL); a refusal that names a profile also leaves an `audit`
-- row on that profile (origin login, old = new = the External ID it keeps). Append-only.
CREATE TABLE sign_in_events (
    pk                  INTEGER PRIMARY KEY,
    at                  TEXT NOT NULL,
    actor               TEXT NOT NULL,      -- `oidc` or `api:<caller>`
    issuer              TEXT NOT NULL,
    account_id          TEXT NOT NULL,      -- the account ID claim's value
    email               TEXT,
    email_verified      INTEGER NOT NULL,
    situation           TEXT NOT NULL,      -- tether_core::signin::SignInSituation
    signed_in           INTEGER NOT NULL,
    linked_now          INTEGER NOT NULL,
    user_pk             INTEGER,            -- the profile signed in, or the one refused
    related             TEXT NOT NULL DEFAULT '',  -- other profiles named: pks, comma-separated
    explanation         TEXT NOT NULL,
    fix                 TEXT NOT NULL
);
CREATE INDEX sign_in_events_user ON sign_in_events (user_pk, pk);
CREATE TRIGGER sign_in_events_no_update BEFORE UPDATE ON sign_in_events
BEGIN SELECT RAISE(ABORT, 'the sign-in trail is append-only'); END;
CREATE TRIGGER sign_in_events_no_delete BEFORE DELETE ON sign_in_events
BEGIN SELECT RAISE(ABORT, 'the sign-in trail is append-only'); END;

-- OpenID Connect authorization requests in flight: the browser holds only a random handle
-- (in a short-lived cookie); state, nonce and the PKCE verifier stay here. A callback takes
-- its row (delete … returning), so a replayed state finds nothing, on every replica.
CREATE TABLE oidc_logins (
    handle_hash         TEXT PRIMARY KEY,   -- hex SHA-256 of the cookie's handle
    state               TEXT NOT NULL,
    nonce               TEXT NOT NULL,
    pkce_verifier       TEXT NOT NULL,
    return_to           TEXT,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX oidc_logins_expires ON oidc_logins (expires_at);
