-- The provider a sign-in was started with (its issuer and this client's ID at it): the
-- callback refuses to finish the sign-in with another, e.g. after the settings changed.
ALTER TABLE oidc_logins ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE oidc_logins ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
