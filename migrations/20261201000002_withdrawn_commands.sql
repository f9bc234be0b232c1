-- A command the broker did not acknowledge in time may still have reached
-- it: the API applies such a write itself and records the command
-- `withdrawn` first, so that a late delivery is skipped, never applied.
ALTER TABLE command_results DROP CONSTRAINT command_results_status_check;
ALTER TABLE command_results ADD CONSTRAINT command_results_status_check
    CHECK (status IN ('applied', 'failed', 'withdrawn'));
