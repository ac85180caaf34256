-- Job control's statements (retries, cancel, alerts, run-history metrics), as named blocks
-- (pyagent.store.jobcontrol). Parameters use psycopg's %(name)s placeholders; values are
-- always bound, never pasted.
-- Nothing here writes a user-visible column of pga_job (name, comment, ...): a retry only
-- moves jobnextrun, exactly as pgAdmin's "Run now" does.

-- ---- retries ---------------------------------------------------------------------------

-- name: lock_claimed_job
-- First statement of the release of a failed run: hold the job row until the retry
-- decision is written, and see jobnextrun as it is now (a "Run now" or schedule edit made
-- during the run shows as a value other than the one the claim saw).
SELECT jobnextrun
  FROM pgagent.pga_job
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)
   FOR UPDATE

-- name: set_local_timezone
-- The job's own zone, for the schema's next-run trigger (as in agent.sql's finish_run).
{{local_timezone}}

-- name: finish_joblog
-- The ordinary close and release of a run (agent.sql's); only what follows is job
-- control's.
{{close_joblog}}

-- name: release_job
{{release_claimed_job}}

-- fragment: failure_streak_of_job
-- Job j's streak of consecutive failed runs ('f'), newest first, up to the last run that
-- ended otherwise. Running rows neither count nor end the streak. The history is the only
-- memory: the count survives restarts and moves between agents.
(SELECT count(*) FROM pgagent.pga_joblog f
  WHERE f.jlgjobid = j.jobid AND f.jlgstatus = 'f'
    AND f.jlgid > COALESCE((SELECT max(o.jlgid) FROM pgagent.pga_joblog o
                             WHERE o.jlgjobid = j.jobid
                               AND o.jlgstatus NOT IN ('f', 'r')), 0))

-- name: failure_streak
-- The run's final status as stored (a cancel may have set 'd' meanwhile) and the job's
-- failure streak (failure_streak_of_job).
SELECT (SELECT jlgstatus FROM pgagent.pga_joblog WHERE jlgid = %(jlgid)s),
       {{failure_streak_of_job}}
  FROM (VALUES (%(job_id)s::int4)) AS j(jobid)

-- name: bring_next_run_forward
-- The retry: the next run becomes now + delay, unless the schedule's own next run (just
-- computed by the trigger) comes first. Runs in the release's transaction, row locked.
UPDATE pgagent.pga_job
   SET jobnextrun = now() + make_interval(secs => %(delay)s)
 WHERE jobid = %(job_id)s AND jobenabled AND jobagentid IS NULL
   AND (jobnextrun IS NULL OR jobnextrun > now() + make_interval(secs => %(delay)s))
RETURNING jobnextrun

-- name: next_run_of
SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %(job_id)s

-- ---- cancel ----------------------------------------------------------------------------

-- name: find_job_by_id
SELECT jobid, jobname FROM pgagent.pga_job WHERE jobid = %(job_id)s

-- name: find_job_by_name
SELECT jobid, jobname FROM pgagent.pga_job WHERE jobname = %(name)s ORDER BY jobid

-- name: request_cancel
-- The cancel request: the job's current run ('r', of the claim of an agent that still
-- holds the job: log_since_claim) becomes 'd' with its duration, and its running step too,
-- with an output saying who cancelled it and when. The agent running it sees the 'd'
-- within about a second and stops the run. Both writes are final: the agent's own
-- bookkeeping only updates rows still 'r'. No row returned: the job is not running,
-- nothing changed.
WITH run AS (
    UPDATE pgagent.pga_joblog l
       SET jlgstatus = 'd', jlgduration = now() - l.jlgstart
      FROM pgagent.pga_job j
     WHERE j.jobid = %(job_id)s AND j.jobagentid IS NOT NULL AND l.jlgstatus = 'r'
       AND {{log_since_claim}}
    RETURNING l.jlgid, j.jobagentid, j.joblastrun
), step AS (
    UPDATE pgagent.pga_jobsteplog s
       SET jslstatus = 'd', jslresult = -1, jslduration = now() - s.jslstart,
           jsloutput = 'Cancelled by ' || %(who)s || ' (database user ' || session_user
                       || ') at ' || date_trunc('second', now())::text
      FROM run
     WHERE s.jsljlgid = run.jlgid AND s.jslstatus = 'r'
    RETURNING s.jslid
)
SELECT run.jlgid, run.jobagentid, run.joblastrun, a.jagstation,
       (SELECT count(*) FROM step), date_trunc('second', now())::text
  FROM run
  LEFT JOIN pgagent.pga_jobagent a ON a.jagpid = run.jobagentid

-- name: run_released
-- After a cancel request: has the agent let go of that run (released the job or started
-- another run)?
SELECT jobagentid IS DISTINCT FROM %(agent_pid)s OR joblastrun IS DISTINCT FROM %(lastrun)s
  FROM pgagent.pga_job
 WHERE jobid = %(job_id)s

-- name: cancelled_runs
-- The agent's check, about once a second while it runs jobs: which of its current runs
-- were marked 'd' by someone else, with the cancel message when a step row carries one.
SELECT l.jlgjobid, l.jlgid,
       (SELECT sl.jsloutput FROM pgagent.pga_jobsteplog sl
         WHERE sl.jsljlgid = l.jlgid AND sl.jslstatus = 'd'
           AND starts_with(sl.jsloutput, 'Cancelled by ')
         ORDER BY sl.jslid DESC LIMIT 1)
  FROM pgagent.pga_job j
  JOIN pgagent.pga_joblog l ON {{log_since_claim}}
 WHERE j.jobid = ANY(%(job_ids)s) AND j.jobagentid = ANY(%(pids)s) AND l.jlgstatus = 'd'

-- name: close_cancelled_steps
-- After the agent stopped a cancelled run: any step row of it still 'r' (one started in
-- the instant before the cancel was seen) ends 'd' with the cancel message.
UPDATE pgagent.pga_jobsteplog
   SET jslstatus = 'd', jslresult = -1, jslduration = now() - jslstart, jsloutput = %(output)s
 WHERE jsljlgid = %(jlgid)s AND jslstatus = 'r'

-- ---- alerts ----------------------------------------------------------------------------

-- name: run_report
-- What an alert says about one finished run: the job, the run, its failing step (else its
-- last step), and the status of the job's previous finished run (for "recovered").
SELECT j.jobname, l.jlgstatus, l.jlgstart, EXTRACT(EPOCH FROM l.jlgduration)::float8,
       st.jstname, st.jslstatus, st.jslresult, left(st.jsloutput, %(output_chars)s),
       (SELECT p.jlgstatus FROM pgagent.pga_joblog p
         WHERE p.jlgjobid = l.jlgjobid AND p.jlgid < l.jlgid AND p.jlgstatus <> 'r'
         ORDER BY p.jlgid DESC LIMIT 1)
  FROM pgagent.pga_joblog l
  JOIN pgagent.pga_job j ON j.jobid = l.jlgjobid
  LEFT JOIN LATERAL (
        SELECT s.jstname, sl.jslstatus, sl.jslresult, sl.jsloutput
          FROM pgagent.pga_jobsteplog sl
          JOIN pgagent.pga_jobstep s ON s.jstid = sl.jsljstid
         WHERE sl.jsljlgid = l.jlgid
         ORDER BY (sl.jslstatus IN ('f', 'd')) DESC, sl.jslid DESC
         LIMIT 1) st ON true
 WHERE l.jlgid = %(jlgid)s

-- ---- metrics ---------------------------------------------------------------------------

-- name: job_run_history
-- Per job: when its last successful and last failed (f, i, d) run ended, and its current
-- streak of failed runs (failure_streak_of_job). Read from the history, so every agent
-- reports the same values.
SELECT j.jobid, j.jobname,
       EXTRACT(EPOCH FROM ok.ended)::float8,
       EXTRACT(EPOCH FROM bad.ended)::float8,
       {{failure_streak_of_job}}
  FROM pgagent.pga_job j
  LEFT JOIN LATERAL (
        SELECT l.jlgstart + COALESCE(l.jlgduration, interval '0') AS ended
          FROM pgagent.pga_joblog l
         WHERE l.jlgjobid = j.jobid AND l.jlgstatus = 's'
         ORDER BY l.jlgid DESC LIMIT 1) ok ON true
  LEFT JOIN LATERAL (
        SELECT l.jlgstart + COALESCE(l.jlgduration, interval '0') AS ended
          FROM pgagent.pga_joblog l
         WHERE l.jlgjobid = j.jobid AND l.jlgstatus IN ('f', 'i', 'd')
         ORDER BY l.jlgid DESC LIMIT 1) bad ON true
 ORDER BY j.jobid
