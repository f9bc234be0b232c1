-- Accounts: the host's own table (host/src/auth), never seen by plugins.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Stored lower-cased and trimmed by the host; unique as such.
    email         text NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND char_length(email) <= 254),
    password_hash text NOT NULL,
    display_name  text CHECK (char_length(display_name) <= 100),
    role          text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
