-- Accounts an admin switched off (PATCH /users/{id}): no login, no refresh,
-- no external token; their tokens already issued are refused through
-- Redis (auth/revocation.rs).
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- Admins list accounts by email, searching email and display name
-- (pg_trgm: 20261122000002_tasks.sql).
CREATE INDEX users_search_idx ON users USING gin ((lower(email || ' ' || coalesce(display_name, ''))) gin_trgm_ops);

-- Password reset tokens (POST /auth/password-reset): only their SHA-256 is
-- kept, so a database dump opens no account; a token is deleted when used.
CREATE TABLE password_reset_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_reset_tokens_user_idx ON password_reset_tokens (user_id);
CREATE INDEX password_reset_tokens_expiry_idx ON password_reset_tokens (expires_at);
