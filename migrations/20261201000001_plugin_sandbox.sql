-- Plugins reach the database as roles of their own (see host/src/plugins/database.rs).
-- A plugin's statements and the host's own statements of the same call
-- (its outbox records, a handler's ledger row, a command's result) share
-- one transaction on a connection logged in as the plugin's role. The
-- host's statements are these SECURITY DEFINER functions: they run with
-- the rights of their owner, the host, and only for a caller that hands
-- them the host's key, which no plugin can read.

-- The key: 244 random bits (two version-4 UUIDs), readable by the host
-- alone (no privilege is granted on the table).
CREATE TABLE host_keys (
    key        bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO host_keys (key)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');

-- Called by the functions below, which run as the host: for anyone else the
-- table is unreadable.
CREATE FUNCTION host_check_key(key bytea) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.host_keys WHERE host_keys.key = host_check_key.key) THEN
        RAISE EXCEPTION 'only the host may call this function' USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;

-- outbox::append: records in the order given (ids follow it).
CREATE FUNCTION host_append_outbox(key bytea, topics text[], record_keys text[], payloads bytea[], headers jsonb[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.host_check_key(key);
    INSERT INTO public.outbox (topic, record_key, payload, headers)
    SELECT r.topic, r.record_key, r.payload, r.headers
    FROM unnest(topics, record_keys, payloads, headers) WITH ORDINALITY
         AS r(topic, record_key, payload, headers, position)
    ORDER BY r.position;
END;
$$;

-- The processed-event ledger row of a handler call.
CREATE FUNCTION host_record_processed(key bytea, handler text, event_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.host_check_key(key);
    INSERT INTO public.processed_events (handler, event_id) VALUES (handler, event_id);
END;
$$;

-- The `applied` outcomes of a batch of commands.
CREATE FUNCTION host_record_command_results(key bytea, ids uuid[], issuers uuid[], results jsonb[], request_ids text[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.host_check_key(key);
    INSERT INTO public.command_results (id, issuer_id, status, result, request_id)
    SELECT r.id, r.issuer_id, 'applied', r.result, r.request_id
    FROM unnest(ids, issuers, results, request_ids) AS r(id, issuer_id, result, request_id);
END;
$$;

-- The relays take turns on this row rather than on an advisory lock: a
-- plugin may take any advisory lock, but has no privilege on this table.
CREATE TABLE outbox_relay_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO outbox_relay_lock (id) VALUES (1);

-- What plugins share with other plugins: `[database] shares` of the
-- publisher's manifest, checked when another plugin asks to read it.
CREATE TABLE plugin_shares (
    plugin   text NOT NULL,
    relation text NOT NULL,
    PRIMARY KEY (plugin, relation)
);
