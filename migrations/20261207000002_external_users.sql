-- Users of an external OpenID Connect provider (auth/oidc.rs), created the
-- first time one of their tokens is seen: known by the provider's issuer and
-- subject, without a password (they sign in at the provider).
ALTER TABLE users
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD COLUMN external_issuer text,
    ADD COLUMN external_subject text,
    ADD CONSTRAINT users_external_identity UNIQUE (external_issuer, external_subject),
    ADD CONSTRAINT users_password_or_provider CHECK (
        (password_hash IS NOT NULL AND external_subject IS NULL)
        OR (password_hash IS NULL AND external_issuer IS NOT NULL AND external_subject IS NOT NULL)
    );
