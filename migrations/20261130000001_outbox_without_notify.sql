-- The relay is woken in-process after a write commits. A NOTIFY in the
-- writing transaction made every write's commit wait for the previous one
-- (PostgreSQL serialises notifying commits, WAL flush included).
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
