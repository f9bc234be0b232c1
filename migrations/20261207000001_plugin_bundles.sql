-- Plugin bundles delivered to every replica (plugins/bundle_store.rs): the
-- files of every uploaded version, once per content; which version each
-- uploaded plugin should serve; and which versions each replica serves.
-- Host tables: no plugin role has any privilege on them.

CREATE TABLE plugin_files (
    sha256 text PRIMARY KEY,
    content bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- One version of a plugin: its manifest, module and migrations, by the
-- SHA-256 of each file; `digest` is the loader's digest of them all (which
-- does not name the plugin: the same files may serve under two names).
CREATE TABLE plugin_releases (
    name text NOT NULL,
    digest text NOT NULL,
    version text NOT NULL,
    manifest_sha256 text NOT NULL REFERENCES plugin_files,
    module_sha256 text NOT NULL REFERENCES plugin_files,
    -- [{"file": "0001_init.sql", "sha256": "…"}, …]
    migrations jsonb NOT NULL DEFAULT '[]',
    -- `upload`, or `directory`: the version a replica served from its plugin
    -- directory when the first upload replaced it (so a rollback to it
    -- reaches every replica).
    origin text NOT NULL CHECK (origin IN ('upload', 'directory')),
    stored_by uuid,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, digest)
);

-- The version every replica installs into its plugin directory and serves.
CREATE TABLE plugin_deployments (
    name text PRIMARY KEY,
    digest text NOT NULL,
    deployed_by uuid,
    deployed_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (name, digest) REFERENCES plugin_releases (name, digest)
);

-- What each process serves, refreshed while it runs (GET /admin/plugins).
CREATE TABLE plugin_replicas (
    id uuid PRIMARY KEY,
    role text NOT NULL,
    host text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    -- [{"name": …, "version": …, "sha256": …, "digest": …}, …]
    serving jsonb NOT NULL
);
