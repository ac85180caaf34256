-- Fragments used by more than one of the store's SQL files (pyagent.store.sqlfile makes
-- them available to every file): each rule is written once.

-- fragment: agent_sightings
-- Every other agent's row as pyagent.liveness.judge reads it: when it last renewed its
-- lease (jaglogintime) and how long ago by the server's clock, whether a backend has its
-- pid, the pyagent advert (lease terms) that backend holds, and whether that backend
-- started after the row was last written (pgAgent's pid-reuse test). backend_start is NULL
-- for other roles' sessions without pg_read_all_stats: then the pid alone counts.
SELECT 'agent' AS kind, a.jagpid::int8 AS id, a.jaglogintime AS ts,
       EXTRACT(EPOCH FROM (now() - a.jaglogintime))::float8 AS seconds,
       adv.objid::int8 AS num, s.pid IS NOT NULL AS flag,
       COALESCE(s.backend_start > a.jaglogintime, false) AS flag2, a.jagstation AS label
  FROM pgagent.pga_jobagent a
  LEFT JOIN pg_catalog.pg_stat_activity s ON s.pid = a.jagpid
  LEFT JOIN pg_catalog.pg_locks adv
         ON adv.pid = a.jagpid AND adv.locktype = 'advisory' AND adv.granted
        AND adv.classid = %(advert_class)s::oid AND adv.objsubid = 2
 WHERE a.jagpid <> ALL(%(own_pids)s)

-- ---- runs and their release (agent.sql, jobcontrol.sql) -------------------------------

-- fragment: log_since_claim
-- Log row l belongs to job j's current claim: it started since the claim set joblastrun
-- (every log row of the job when joblastrun was never set).
l.jlgjobid = j.jobid AND (j.joblastrun IS NULL OR l.jlgstart >= j.joblastrun)

-- fragment: next_run_after_release
-- jobnextrun = NULL makes pga_job_trigger compute the next run (unless pyagent computed it
-- as a fallback: %(next_run)s). A value that changed while the job ran ("Run now", or a
-- schedule edit) is kept instead of overwritten.
CASE WHEN j.jobnextrun IS NOT DISTINCT FROM %(claimed_nextrun)s
     THEN %(next_run)s::timestamptz ELSE j.jobnextrun END

-- fragment: close_joblog
-- Close a run's log row, unless something (a zombie sweep, a cancel) closed it already.
UPDATE pgagent.pga_joblog
   SET jlgstatus = %(status)s, jlgduration = now() - jlgstart
 WHERE jlgid = %(jlgid)s AND jlgstatus = 'r'

-- fragment: release_claimed_job
-- Give the claim back and schedule the next run (see next_run_after_release).
UPDATE pgagent.pga_job j
   SET jobagentid = NULL, jobnextrun = {{next_run_after_release}}
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- ---- the session's clock and time zone (agent.sql, catalog.sql, jobcontrol.sql) ---------

-- fragment: session_clock
-- The server's clock and this session's TimeZone, the zone pgAgent reads schedules in.
SELECT now() AS now, pg_catalog.current_setting('TimeZone') AS timezone

-- fragment: local_timezone
-- Until the transaction ends, local times are read in this zone (a job's own, @TIMEZONE):
-- the schema's trigger then computes the next run from the job's schedules in that zone,
-- whatever the session's TimeZone is.
SELECT pg_catalog.set_config('TimeZone', %(zone)s, true)
