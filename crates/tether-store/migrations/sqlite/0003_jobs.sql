-- tether schema, sqlite dialect: jobs. Never edit an applied migration: add a new file.

-- Pull jobs (DESIGN §4.3): one row per job, its state, progress, lease and report.
CREATE TABLE jobs (
    pk                  INTEGER PRIMARY KEY,
    source_pk           INTEGER NOT NULL REFERENCES sources (pk),
    kind                TEXT NOT NULL DEFAULT 'pull' CHECK (kind IN ('pull')),
    dry_run             INTEGER NOT NULL,
    state               TEXT NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'awaiting_approval', 'succeeded', 'failed', 'cancelled')),
    -- Progress: the phase (fetch, store, plan, safeguard, apply, report) and its counters.
    phase               TEXT,
    pages               INTEGER NOT NULL DEFAULT 0,
    accounts_fetched    INTEGER NOT NULL DEFAULT 0,
    users_planned       INTEGER NOT NULL DEFAULT 0,
    changes_planned     INTEGER NOT NULL DEFAULT 0,
    changes_applied     INTEGER NOT NULL DEFAULT 0,
    requested_by        TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    updated_at          TEXT NOT NULL,
    finished_at         TEXT,
    error               TEXT,
    report              TEXT,              -- JSON, written when the job stops or is held
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    -- The mass-change safeguard: how many changes an admin approved (NULL: none yet).
    approved_changes    INTEGER,
    decided_by          TEXT,
    decided_at          TEXT,
    -- How many times a runner claimed the job (a takeover after a dead runner adds one).
    attempts            INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at    TEXT,
    undone_at           TEXT,
    undone_by           TEXT,
    undo_report         TEXT
);
-- One job per source at a time, across processes: the database refuses a second active one.
CREATE UNIQUE INDEX jobs_one_active_per_source ON jobs (source_pk)
    WHERE state IN ('queued', 'running', 'awaiting_approval');
CREATE INDEX jobs_runnable ON jobs (state, pk) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_source ON jobs (source_pk, pk);

-- The runs a job made (one per attempt, plus an undo): the audit rows of those runs are the
-- job's changes, written in the same transaction as the External IDs themselves.
ALTER TABLE runs ADD COLUMN job_pk INTEGER REFERENCES jobs (pk);
CREATE INDEX runs_job ON runs (job_pk) WHERE job_pk IS NOT NULL;
CREATE INDEX audit_run ON audit (run_pk) WHERE run_pk IS NOT NULL;

-- Accounts missing from a complete pull are marked not seen (never deleted) and left out of
-- matching until a pull sees them again.
ALTER TABLE accounts ADD COLUMN seen INTEGER NOT NULL DEFAULT 1;

-- Scheduled pulls: every `schedule_minutes` (NULL: no schedule), next due at `next_run_at`.
ALTER TABLE sources ADD COLUMN schedule_minutes INTEGER;
ALTER TABLE sources ADD COLUMN next_run_at TEXT;
