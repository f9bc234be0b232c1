-- Fencing tokens of lock-guarded jobs: a run writes its token here first
-- and gives up if a newer one is recorded (its lease lapsed and another
-- replica took over).
CREATE TABLE job_fences (
    job   text PRIMARY KEY,
    fence bigint NOT NULL
);

-- One row per completed run of a scheduled job, per time slot.
CREATE TABLE job_runs (
    job         text NOT NULL,
    slot        bigint NOT NULL,
    fence       bigint NOT NULL,
    holder      text NOT NULL,
    items       integer NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, slot)
);

-- Tasks announced as overdue, once per due date: a task whose due date is
-- moved and passes again is announced again.
CREATE TABLE overdue_notices (
    task_id     uuid NOT NULL,
    due_at      timestamptz NOT NULL,
    notified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, due_at)
);
