-- The catalogue side of the pgagent schema: jobs, steps, schedules, exceptions and their
-- run logs, as the management commands (`pyagent jobs ...`) read and write them.
-- Bound parameters only; every block is one statement.

-- name: session_info
{{session_clock}}

-- fragment: job_rows
-- One row per job, with its class name, the agent running it now (if any) and its newest
-- run.
SELECT j.jobid, j.jobname, c.jclname, j.jobenabled, j.jobhostagent, j.jobdesc,
       j.jobcreated, j.jobchanged, j.jobagentid, a.jagstation, j.jobnextrun, j.joblastrun,
       l.jlgid, l.jlgstatus, l.jlgstart, l.jlgduration
  FROM pgagent.pga_job j
  JOIN pgagent.pga_jobclass c ON c.jclid = j.jobjclid
  LEFT JOIN pgagent.pga_jobagent a ON a.jagpid = j.jobagentid
  LEFT JOIN LATERAL (
        SELECT jlgid, jlgstatus, jlgstart, jlgduration
          FROM pgagent.pga_joblog
         WHERE jlgjobid = j.jobid
         ORDER BY jlgid DESC
         LIMIT 1) l ON true

-- name: jobs
-- A NULL jobids array means every job.
{{job_rows}}
 WHERE %(jobids)s::int4[] IS NULL OR j.jobid = ANY(%(jobids)s::int4[])
 ORDER BY j.jobname, j.jobid

-- name: job_ids_by_name
SELECT jobid FROM pgagent.pga_job WHERE jobname = %(name)s ORDER BY jobid

-- name: jobs_named
SELECT jobid, jobname FROM pgagent.pga_job WHERE jobname = ANY(%(names)s::text[]) ORDER BY jobid

-- fragment: step_rows
SELECT jstid, jstjobid, jstname, jstdesc, jstenabled, jstkind, jstcode, jstconnstr,
       jstdbname::text, jstonerror
  FROM pgagent.pga_jobstep
 WHERE jstjobid = ANY(%(jobids)s::int4[])

-- name: steps
-- In execution order: pgAgent runs enabled steps ORDER BY jstname, jstid.
{{step_rows}}
 ORDER BY jstjobid, jstname, jstid

-- fragment: schedule_rows
SELECT jscid, jscjobid, jscname, jscdesc, jscenabled, jscstart, jscend,
       jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths
  FROM pgagent.pga_schedule
 WHERE jscjobid = ANY(%(jobids)s::int4[])

-- name: schedules
{{schedule_rows}}
 ORDER BY jscjobid, jscname, jscid

-- fragment: exception_rows
SELECT e.jexid, e.jexscid, e.jexdate, e.jextime
  FROM pgagent.pga_exception e
  JOIN pgagent.pga_schedule s ON s.jscid = e.jexscid
 WHERE s.jscjobid = ANY(%(jobids)s::int4[])

-- name: exceptions
{{exception_rows}}
 ORDER BY e.jexid

-- name: runs
-- Newest first. A NULL jobid means every job; failed_only keeps f, d and i.
SELECT l.jlgid, l.jlgjobid, j.jobname, l.jlgstatus, l.jlgstart, l.jlgduration
  FROM pgagent.pga_joblog l
  JOIN pgagent.pga_job j ON j.jobid = l.jlgjobid
 WHERE (%(jobid)s::int4 IS NULL OR l.jlgjobid = %(jobid)s::int4)
   AND (NOT %(failed_only)s::bool OR l.jlgstatus IN ('f', 'd', 'i'))
 ORDER BY l.jlgid DESC
 LIMIT %(limit)s

-- name: run
SELECT l.jlgid, l.jlgjobid, j.jobname, l.jlgstatus, l.jlgstart, l.jlgduration
  FROM pgagent.pga_joblog l
  JOIN pgagent.pga_job j ON j.jobid = l.jlgjobid
 WHERE l.jlgid = %(jlgid)s

-- name: runs_since
-- Runs of one job that began after a "Run now" request: a higher log id and a start not
-- before the request (both, so that a run already under way is never taken for it).
SELECT l.jlgid, l.jlgjobid, j.jobname, l.jlgstatus, l.jlgstart, l.jlgduration
  FROM pgagent.pga_joblog l
  JOIN pgagent.pga_job j ON j.jobid = l.jlgjobid
 WHERE l.jlgjobid = %(jobid)s AND l.jlgid > %(after_jlgid)s AND l.jlgstart >= %(since)s
 ORDER BY l.jlgid

-- name: step_runs
SELECT sl.jslid, sl.jsljlgid, sl.jsljstid, s.jstname, sl.jslstatus, sl.jslresult,
       sl.jslstart, sl.jslduration, sl.jsloutput
  FROM pgagent.pga_jobsteplog sl
  JOIN pgagent.pga_jobstep s ON s.jstid = sl.jsljstid
 WHERE sl.jsljlgid = %(jlgid)s
 ORDER BY sl.jslid

-- name: last_run_id
SELECT coalesce(max(jlgid), 0) FROM pgagent.pga_joblog WHERE jlgjobid = %(jobid)s

-- name: agents
-- Registered agents as the agents see each other (pyagent.liveness judges them alive or
-- dead: the same rule as the agents' own).
{{agent_sightings}}
 ORDER BY a.jagstation, a.jagpid

-- name: run_now
-- Exactly what pgAdmin's "Run now" sends (pga_job/sql/pre3.4/run_now.sql). On a disabled
-- job the schema's trigger turns the value back into NULL.
UPDATE pgagent.pga_job SET jobnextrun = now()::timestamptz WHERE jobid = %(jobid)s
RETURNING jobnextrun, now() AS requested_at

-- name: set_enabled
UPDATE pgagent.pga_job SET jobenabled = %(enabled)s WHERE jobid = %(jobid)s
RETURNING jobnextrun

-- name: job_classes
SELECT jclid, jclname FROM pgagent.pga_jobclass ORDER BY jclid

-- name: existing_databases
SELECT datname::text FROM pg_catalog.pg_database WHERE datname = ANY(%(names)s::text[])

-- name: order_by_collation
-- The order the database sorts these names in (pgAgent runs steps ORDER BY jstname), as
-- 1-based positions into the given array.
SELECT i::int4
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS t(n, i)
 ORDER BY n, i

-- name: resolve_timestamps
-- Timestamps written without a zone, read in the session's TimeZone as pgAgent reads them.
SELECT t::timestamptz
  FROM unnest(%(texts)s::text[]) WITH ORDINALITY AS u(t, i)
 ORDER BY i

-- name: resolve_timestamps_in_zone
-- The same, read in a given time zone (a job's own, @TIMEZONE).
SELECT t::timestamp AT TIME ZONE %(zone)s
  FROM unnest(%(texts)s::text[]) WITH ORDINALITY AS u(t, i)
 ORDER BY i

-- name: known_timezones
-- Which of these zone names the server's tz database has (slow-ish: it lists the zones).
SELECT name FROM pg_catalog.pg_timezone_names WHERE name = ANY(%(zones)s::text[])

-- name: set_local_timezone
-- Until the end of the transaction (or the next call), read local times in this zone.
{{local_timezone}}

-- name: reschedule_job
-- The schema's trigger computes the next run again (in the session's TimeZone), as it
-- does when a schedule changes.
UPDATE pgagent.pga_job SET jobnextrun = NULL WHERE jobid = %(jobid)s AND jobenabled

-- name: schedules_next_run
-- What the schema's own function gives as the job's next run now (in the session's
-- TimeZone), as pga_job_trigger would compute it.
SELECT min(pgagent.pga_next_schedule(jscid, jscstart, jscend, jscminutes, jschours,
                                     jscweekdays, jscmonthdays, jscmonths))
  FROM pgagent.pga_schedule
 WHERE jscenabled AND jscjobid = %(jobid)s

-- name: insert_job
INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc, jobhostagent, jobenabled)
VALUES (%(jclid)s, %(name)s, %(desc)s, %(hostagent)s, %(enabled)s)
RETURNING jobid

-- name: update_job
UPDATE pgagent.pga_job
   SET jobjclid = %(jclid)s, jobname = %(name)s, jobdesc = %(desc)s,
       jobhostagent = %(hostagent)s, jobenabled = %(enabled)s, jobchanged = now()
 WHERE jobid = %(jobid)s

-- name: touch_job
UPDATE pgagent.pga_job SET jobchanged = now() WHERE jobid = %(jobid)s

-- name: delete_job
DELETE FROM pgagent.pga_job WHERE jobid = %(jobid)s

-- name: insert_step
INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstdesc, jstenabled, jstkind, jstcode,
                                 jstconnstr, jstdbname, jstonerror)
VALUES (%(jobid)s, %(name)s, %(desc)s, %(enabled)s, %(kind)s, %(code)s,
        %(connstr)s, %(dbname)s, %(onerror)s)
RETURNING jstid

-- name: update_step
UPDATE pgagent.pga_jobstep
   SET jstname = %(name)s, jstdesc = %(desc)s, jstenabled = %(enabled)s, jstkind = %(kind)s,
       jstcode = %(code)s, jstconnstr = %(connstr)s, jstdbname = %(dbname)s,
       jstonerror = %(onerror)s
 WHERE jstid = %(jstid)s

-- name: delete_step
DELETE FROM pgagent.pga_jobstep WHERE jstid = %(jstid)s

-- name: insert_schedule
INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscdesc, jscenabled, jscstart, jscend,
                                  jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths)
VALUES (%(jobid)s, %(name)s, %(desc)s, %(enabled)s,
        coalesce(%(start)s::timestamptz, current_timestamp), %(end)s::timestamptz,
        %(minutes)s::bool[], %(hours)s::bool[], %(weekdays)s::bool[], %(monthdays)s::bool[],
        %(months)s::bool[])
RETURNING jscid

-- name: update_schedule
UPDATE pgagent.pga_schedule
   SET jscname = %(name)s, jscdesc = %(desc)s, jscenabled = %(enabled)s,
       jscstart = coalesce(%(start)s::timestamptz, jscstart), jscend = %(end)s::timestamptz,
       jscminutes = %(minutes)s::bool[], jschours = %(hours)s::bool[],
       jscweekdays = %(weekdays)s::bool[], jscmonthdays = %(monthdays)s::bool[],
       jscmonths = %(months)s::bool[]
 WHERE jscid = %(jscid)s

-- name: delete_schedule
DELETE FROM pgagent.pga_schedule WHERE jscid = %(jscid)s

-- name: insert_exception
INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)
VALUES (%(jscid)s, %(date)s::date, %(time)s::time)

-- name: delete_exception
DELETE FROM pgagent.pga_exception WHERE jexid = %(jexid)s

-- ---- apply: one at a time, and never over an edit it did not see -------------------------

-- name: read_committed
-- The first statement of an apply: each later statement sees what was committed before it
-- started, so an apply that waited for another plans from that one's result, whatever
-- default_transaction_isolation says.
SET TRANSACTION ISOLATION LEVEL READ COMMITTED

-- name: snapshot_read
-- The first statement of a dry run: all its reads see one snapshot; it locks nothing.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- name: set_lock_timeout
-- How long the next lock waits may take, until the transaction ends.
SELECT pg_catalog.set_config('lock_timeout', %(timeout)s, true)

-- name: try_apply_lock
-- The apply lock: a transaction-level advisory lock that only `pyagent jobs apply` takes,
-- so agents, pgAdmin and other sessions never wait for it.
SELECT pg_catalog.pg_try_advisory_xact_lock(%(key)s::int8)

-- name: wait_apply_lock
SELECT pg_catalog.pg_advisory_xact_lock(%(key)s::int8)

-- name: apply_lock_holder
-- The backend holding the apply lock in this database (a bigint key shows in pg_locks as
-- classid = its high 32 bits, objid = its low 32 bits, objsubid = 1).
SELECT l.pid
  FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.classid = %(high)s::int8::oid AND l.objid = %(low)s::int8::oid
   AND l.database = (SELECT oid FROM pg_catalog.pg_database
                      WHERE datname = pg_catalog.current_database())
 LIMIT 1

-- The rows an apply is about to change, locked until it commits and read as they are now.
-- FOR NO KEY UPDATE is the lock the UPDATE itself would take: the agent's claim (FOR
-- UPDATE SKIP LOCKED) skips these jobs, its pga_joblog/pga_jobsteplog inserts (whose
-- foreign keys take FOR KEY SHARE) go on. Tables in the order pgAdmin's job dialog writes
-- them, rows in id order, so two lockers never wait for each other in a circle.

-- name: lock_jobs
{{job_rows}}
 WHERE j.jobid = ANY(%(jobids)s::int4[])
 ORDER BY j.jobid
   FOR NO KEY UPDATE OF j

-- name: lock_steps
{{step_rows}}
 ORDER BY jstid
   FOR NO KEY UPDATE

-- name: lock_schedules
{{schedule_rows}}
 ORDER BY jscid
   FOR NO KEY UPDATE

-- name: lock_exceptions
{{exception_rows}}
 ORDER BY e.jexid
   FOR NO KEY UPDATE OF e
