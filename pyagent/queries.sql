-- Every statement pyagent sends to the pgagent schema, as named blocks.
-- Parameters use psycopg's %(name)s placeholders; values are always bound, never pasted.

-- name: sanity_check
SELECT count(*) AS count, pg_backend_pid() AS pid
  FROM pg_catalog.pg_class cl
  JOIN pg_catalog.pg_namespace ns ON ns.oid = cl.relnamespace
 WHERE cl.relname = 'pga_job' AND ns.nspname = 'pgagent'

-- name: version_function_exists
SELECT count(*)
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = 'pgagent_schema_version' AND n.nspname = 'pgagent'
   AND p.prorettype = 'pg_catalog.int2'::pg_catalog.regtype AND p.pronargs = 0

-- name: schema_version
SELECT pgagent.pgagent_schema_version()::text

-- name: server_facts
SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('TimeZone'),
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                WHERE tgname = 'pyagent_notify_trigger'
                  AND tgrelid = 'pgagent.pga_job'::pg_catalog.regclass)

-- name: register_agent
INSERT INTO pgagent.pga_jobagent (jagpid, jagstation)
VALUES (pg_catalog.pg_backend_pid(), %(station)s)
RETURNING jagpid

-- name: remove_stale_self
-- A row with our own pid can only be left over from a dead backend whose pid was reused.
DELETE FROM pgagent.pga_jobagent WHERE jagpid = pg_catalog.pg_backend_pid()

-- name: adopt_claims
-- After a reconnect: jobs still running in this process move to the new identity.
UPDATE pgagent.pga_job SET jobagentid = %(new_pid)s
 WHERE jobagentid = %(old_pid)s AND jobid = ANY(%(job_ids)s)

-- name: unregister_agent
DELETE FROM pgagent.pga_jobagent WHERE jagpid = %(pid)s

-- name: find_zombie_agents
-- An agent is gone when no backend has its pid, or when the pid now belongs to a backend
-- that started after the agent registered (pid reuse). backend_start is NULL for other
-- roles' sessions when we lack pg_read_all_stats; then only the pid is compared.
SELECT a.jagpid
  FROM pgagent.pga_jobagent a
 WHERE NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_stat_activity s
         WHERE s.pid = a.jagpid
           AND (s.backend_start IS NULL OR s.backend_start <= a.jaglogintime))
   AND a.jagpid <> ALL(%(own_pids)s)

-- name: abort_zombie_logs
WITH running AS (
    UPDATE pgagent.pga_joblog l SET jlgstatus = 'd'
      FROM pgagent.pga_job j
     WHERE l.jlgjobid = j.jobid AND j.jobagentid = %(pid)s AND l.jlgstatus = 'r'
    RETURNING l.jlgid
)
UPDATE pgagent.pga_jobsteplog sl SET jslstatus = 'd'
  FROM running
 WHERE sl.jsljlgid = running.jlgid AND sl.jslstatus = 'r'

-- name: zombie_jobs
SELECT jobid FROM pgagent.pga_job WHERE jobagentid = %(pid)s

-- name: delete_agent
DELETE FROM pgagent.pga_jobagent WHERE jagpid = %(pid)s

-- name: claim_due_jobs
-- Claims up to %(limit)s due jobs for this agent. SKIP LOCKED lets several agents claim
-- concurrently; the outer re-check of jobagentid keeps a job from being claimed twice
-- even against agents (like the C pgAgent) that claim with a plain conditional UPDATE.
-- Also reports when the next unclaimed job is due (seconds from the server's now) and
-- whether any registered agent looks dead, so one round trip serves the whole poll.
WITH due AS (
    SELECT jobid
      FROM pgagent.pga_job
     WHERE jobenabled AND jobagentid IS NULL AND jobnextrun <= now()
       AND (jobhostagent = '' OR jobhostagent = %(station)s)
     ORDER BY jobnextrun
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE pgagent.pga_job j
       SET jobagentid = %(pid)s, joblastrun = now()
      FROM due
     WHERE j.jobid = due.jobid AND j.jobagentid IS NULL
    RETURNING j.jobid, j.jobnextrun
)
SELECT 'claim' AS kind, jobid, jobnextrun,
       EXTRACT(EPOCH FROM (now() - jobnextrun))::float8 AS seconds  -- pickup lag
  FROM claimed
UNION ALL
SELECT 'next', NULL, NULL, EXTRACT(EPOCH FROM (min(jobnextrun) - now()))::float8
  FROM pgagent.pga_job
 WHERE jobenabled AND jobagentid IS NULL AND jobnextrun IS NOT NULL
   AND (jobhostagent = '' OR jobhostagent = %(station)s)
   AND jobid NOT IN (SELECT jobid FROM due)
UNION ALL
SELECT 'zombies', NULL, NULL, count(*)::float8
  FROM pgagent.pga_jobagent a
 WHERE NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_stat_activity s
         WHERE s.pid = a.jagpid
           AND (s.backend_start IS NULL OR s.backend_start <= a.jaglogintime))
   AND a.jagpid <> ALL(%(own_pids)s)

-- name: start_job
-- The run's pga_joblog row ('r'), the job's comment (where per-job options such as
-- @JOB_TIMEOUT=…; live) and its enabled steps in pgAgent's order, in one round trip.
-- A job without steps gives one row with NULL step columns.
WITH log AS (
    INSERT INTO pgagent.pga_joblog (jlgid, jlgjobid, jlgstatus)
    VALUES (nextval('pgagent.pga_joblog_jlgid_seq'), %(job_id)s, 'r')
    RETURNING jlgid
)
SELECT log.jlgid, j.jobdesc,
       s.jstid, s.jstname, s.jstkind, s.jstcode, s.jstconnstr, s.jstdbname, s.jstonerror,
       s.jstdesc
  FROM log
  LEFT JOIN pgagent.pga_job j ON j.jobid = %(job_id)s
  LEFT JOIN pgagent.pga_jobstep s ON s.jstjobid = %(job_id)s AND s.jstenabled
 ORDER BY s.jstname, s.jstid

-- name: claim_backlog
-- While a backlog of due jobs is being worked off: only the claim (see claim_due_jobs).
WITH due AS (
    SELECT jobid
      FROM pgagent.pga_job
     WHERE jobenabled AND jobagentid IS NULL AND jobnextrun <= now()
       AND (jobhostagent = '' OR jobhostagent = %(station)s)
     ORDER BY jobnextrun
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE pgagent.pga_job j
   SET jobagentid = %(pid)s, joblastrun = now()
  FROM due
 WHERE j.jobid = due.jobid AND j.jobagentid IS NULL
RETURNING 'claim', j.jobid, j.jobnextrun, EXTRACT(EPOCH FROM (now() - j.jobnextrun))::float8

-- name: insert_steplog
INSERT INTO pgagent.pga_jobsteplog (jslid, jsljlgid, jsljstid, jslstatus)
SELECT nextval('pgagent.pga_jobsteplog_jslid_seq'), %(jlgid)s, jstid, 'r'
  FROM pgagent.pga_jobstep
 WHERE jstid = %(step_id)s
RETURNING jslid

-- name: finish_steplog
-- Guarded by jslstatus = 'r': a step already marked aborted by a sweep stays aborted.
UPDATE pgagent.pga_jobsteplog
   SET jslduration = now() - jslstart, jslresult = %(result)s,
       jslstatus = %(status)s, jsloutput = %(output)s
 WHERE jslid = %(jslid)s AND jslstatus = 'r'

-- name: finish_joblog
UPDATE pgagent.pga_joblog
   SET jlgstatus = %(status)s, jlgduration = now() - jlgstart
 WHERE jlgid = %(jlgid)s AND jlgstatus = 'r'

-- name: release_job
-- jobnextrun = NULL makes pga_job_trigger compute the next run. A value that changed
-- while the job ran ("Run now", or a schedule edit) is kept instead of overwritten.
UPDATE pgagent.pga_job
   SET jobagentid = NULL,
       jobnextrun = CASE WHEN jobnextrun IS NOT DISTINCT FROM %(claimed_nextrun)s
                         THEN NULL ELSE jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- name: finish_job
-- Close the run's log and release the job in one statement (see release_job). If the
-- schema's next-run function fails, nothing is changed and the agent falls back.
WITH log AS (
    UPDATE pgagent.pga_joblog
       SET jlgstatus = %(status)s, jlgduration = now() - jlgstart
     WHERE jlgid = %(jlgid)s AND jlgstatus = 'r'
)
UPDATE pgagent.pga_job
   SET jobagentid = NULL,
       jobnextrun = CASE WHEN jobnextrun IS NOT DISTINCT FROM %(claimed_nextrun)s
                         THEN NULL ELSE jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- name: release_unstarted_job
-- A claimed job whose run never started (interrupted before its log row existed): give
-- the claim back and leave jobnextrun as it is, so the run still happens.
UPDATE pgagent.pga_job SET jobagentid = NULL
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- name: release_job_at
-- Fallback when the schema's next-run function fails: the next run computed by pyagent.
UPDATE pgagent.pga_job
   SET jobagentid = NULL,
       jobnextrun = CASE WHEN jobnextrun IS NOT DISTINCT FROM %(claimed_nextrun)s
                         THEN %(next_run)s::timestamptz ELSE jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- name: release_zombie_job
-- A dead agent's job: if its run started (a log row since the claim set joblastrun; any
-- log row when joblastrun was never set), the schema schedules the next run; if the agent
-- died before starting it, it stays due.
UPDATE pgagent.pga_job j SET jobagentid = NULL,
       jobnextrun = CASE WHEN EXISTS (SELECT 1 FROM pgagent.pga_joblog l
                                       WHERE l.jlgjobid = j.jobid
                                         AND (j.joblastrun IS NULL OR l.jlgstart >= j.joblastrun))
                         THEN NULL ELSE j.jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = %(pid)s

-- name: release_zombie_job_at
UPDATE pgagent.pga_job j SET jobagentid = NULL,
       jobnextrun = CASE WHEN EXISTS (SELECT 1 FROM pgagent.pga_joblog l
                                       WHERE l.jlgjobid = j.jobid
                                         AND (j.joblastrun IS NULL OR l.jlgstart >= j.joblastrun))
                         THEN %(next_run)s::timestamptz ELSE j.jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = %(pid)s

-- name: job_schedules
SELECT jscid, jscstart, jscend, jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths
  FROM pgagent.pga_schedule
 WHERE jscenabled AND jscjobid = %(job_id)s

-- name: schedule_exceptions
SELECT jexscid, jexdate, jextime
  FROM pgagent.pga_exception
 WHERE jexscid = ANY(%(schedule_ids)s)

-- name: purge_old_joblogs
-- Job history retention: one small batch of finished runs older than the limit; their step
-- logs go with them (ON DELETE CASCADE). SKIP LOCKED keeps concurrent agents out of each
-- other's way; each batch is its own short transaction.
WITH doomed AS (
    SELECT jlgid
      FROM pgagent.pga_joblog
     WHERE jlgstart < now() - make_interval(secs => %(seconds)s) AND jlgstatus <> 'r'
     ORDER BY jlgid
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
)
DELETE FROM pgagent.pga_joblog l USING doomed WHERE l.jlgid = doomed.jlgid

-- name: abort_steplog
UPDATE pgagent.pga_jobsteplog
   SET jslstatus = 'd', jslduration = now() - jslstart, jslresult = %(result)s,
       jsloutput = %(output)s
 WHERE jslid = %(jslid)s AND jslstatus = 'r'
