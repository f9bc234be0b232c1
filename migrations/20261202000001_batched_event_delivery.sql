-- A handler commits the ledger rows of a whole batch of events at once.
-- host_record_processed stays for replicas of the previous version while a
-- rolling upgrade runs.
CREATE FUNCTION host_record_processed_events(key bytea, handler text, event_ids text[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.host_check_key(key);
    INSERT INTO public.processed_events (handler, event_id)
    SELECT handler, id FROM unnest(event_ids) AS id;
END;
$$;
