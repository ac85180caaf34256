-- Every statement the agent sends to the pgagent schema while it runs, as named blocks.
-- Parameters use psycopg's %(name)s placeholders; values are always bound, never pasted.
-- `-- fragment: x` blocks are not statements: `{{x}}` inside a block is replaced by the
-- fragment's text when the file is loaded, so a predicate is written once.

-- (close_joblog, release_claimed_job, log_since_claim, session_clock and local_timezone
-- are in shared.sql: job control's statements use them too.)

-- fragment: run_started_since_claim
-- A claimed job's run started: a log row of its current claim exists (log_since_claim).
EXISTS (SELECT 1 FROM pgagent.pga_joblog l WHERE {{log_since_claim}})

-- ---- start-up -------------------------------------------------------------------------

-- name: schema_facts
-- Is there a pga_job table, a pgagent_schema_version() of the right shape, and its value.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class cl
                 JOIN pg_catalog.pg_namespace ns ON ns.oid = cl.relnamespace
                WHERE cl.relname = 'pga_job' AND ns.nspname = 'pgagent') AS has_job_table,
       EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname = 'pgagent_schema_version' AND n.nspname = 'pgagent'
                  AND p.prorettype = 'pg_catalog.int2'::pg_catalog.regtype
                  AND p.pronargs = 0) AS has_version_function

-- name: missing_privileges
-- Which of the privileges the agent needs (pyagent.privileges, passed as three parallel
-- arrays) the current role lacks. Catalog reads only, so it also works for a role
-- without USAGE on the schema: objects are found in pg_class/pg_proc, never by resolving
-- `pgagent.x`, which would itself fail with "permission denied for schema". A function is
-- named without its arguments: every function of that name is checked.
WITH wanted AS (
    SELECT w.kind, w.name, w.privilege, w.n
      FROM unnest(%(kinds)s::text[], %(names)s::text[], %(privileges)s::text[])
           WITH ORDINALITY AS w(kind, name, privilege, n)
), ns AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pgagent'
)
SELECT w.kind,
       CASE WHEN w.kind = 'FUNCTION'
            THEN p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'
            ELSE w.name END AS name,
       w.privilege,
       current_user::text
  FROM wanted w
 CROSS JOIN ns
  LEFT JOIN pg_catalog.pg_class c
         ON w.kind IN ('TABLE', 'SEQUENCE') AND c.relnamespace = ns.oid AND c.relname = w.name
  LEFT JOIN pg_catalog.pg_proc p
         ON w.kind = 'FUNCTION' AND p.pronamespace = ns.oid AND p.proname = w.name
 WHERE CASE w.kind
         WHEN 'SCHEMA' THEN NOT pg_catalog.has_schema_privilege(ns.oid, 'USAGE')
         WHEN 'TABLE' THEN c.oid IS NOT NULL
                       AND NOT pg_catalog.has_table_privilege(c.oid, w.privilege)
         WHEN 'SEQUENCE' THEN c.oid IS NOT NULL
                       AND NOT (pg_catalog.has_sequence_privilege(c.oid, 'USAGE')
                                OR pg_catalog.has_sequence_privilege(c.oid, 'UPDATE'))
         WHEN 'FUNCTION' THEN p.oid IS NOT NULL
                       AND NOT pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
       END
 ORDER BY w.n, 2

-- name: schema_version
SELECT pgagent.pgagent_schema_version()::text

-- name: server_facts
SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('TimeZone'),
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                WHERE tgname = 'pyagent_notify_trigger'
                  AND tgrelid = 'pgagent.pga_job'::pg_catalog.regclass)

-- name: session_timezone_facts
-- Where this session's TimeZone comes from (pg_settings.source: 'client' for PGTZ and
-- connect-string options, 'user' / 'database user' for the login role's setting,
-- 'database' / 'global' / 'configuration file' ... for what every session here gets), and
-- what every session of this database gets unless its role or client says otherwise: the
-- database's own setting, else the one for all roles (pg_db_role_setting, readable by
-- every role). The server's own value is not readable once a session-level source
-- overrides it: then both are NULL.
WITH stored AS (
    SELECT d.setdatabase <> 0 AS for_database, substr(c.entry, strpos(c.entry, '=') + 1) AS value
      FROM pg_catalog.pg_db_role_setting d
     CROSS JOIN LATERAL unnest(d.setconfig) AS c(entry)
     WHERE d.setrole = 0
       AND d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                  WHERE datname = pg_catalog.current_database()))
       AND lower(split_part(c.entry, '=', 1)) = 'timezone'
)
SELECT s.setting, s.source,
       COALESCE((SELECT value FROM stored WHERE for_database),
                (SELECT value FROM stored WHERE NOT for_database)),
       session_user::text, pg_catalog.current_database()::text
  FROM pg_catalog.pg_settings s
 WHERE s.name = 'TimeZone'

-- name: advertise_lease
-- Held by the service session for its whole life: tells other agents that this session is
-- a pyagent agent's and by which lease terms to judge it (pyagent.liveness).
SELECT pg_catalog.pg_advisory_lock_shared(%(advert_class)s, %(advert)s)

-- name: register_agent
-- No row when one with this session's pid is left over (see stale_row).
INSERT INTO pgagent.pga_jobagent (jagpid, jagstation)
VALUES (pg_catalog.pg_backend_pid(), %(station)s)
ON CONFLICT (jagpid) DO NOTHING
RETURNING jagpid, jaglogintime

-- name: stale_row
-- A row holding this session's pid: its backend is gone (the pid is ours now); the pid (as
-- the server knows it: a pooler may announce another at login), how long since the row last
-- renewed its lease, and when that was.
SELECT jagpid, EXTRACT(EPOCH FROM (now() - jaglogintime))::float8, jaglogintime
  FROM pgagent.pga_jobagent
 WHERE jagpid = pg_catalog.pg_backend_pid()

-- name: renew_lease
-- The lease keeper's renewal, when the poll is late (it goes through the bookkeeping pool,
-- so a lost service connection does not stop it). No row: the agent was cleared.
UPDATE pgagent.pga_jobagent SET jaglogintime = now()
 WHERE jagpid = %(pid)s
RETURNING jaglogintime,
          (SELECT count(*) FROM pgagent.pga_jobagent o WHERE o.jagpid <> %(pid)s)

-- name: lock_own_row
-- After a reconnect, the first statement of the adoption: the old identity's row, locked,
-- if it is still the one this agent last renewed (else another agent cleared it).
SELECT 1 FROM pgagent.pga_jobagent
 WHERE jagpid = %(old_pid)s AND jaglogintime = %(renewed)s
   FOR UPDATE

-- name: adopt_claims
-- Jobs still running in this process move to the new identity (the old row is locked).
UPDATE pgagent.pga_job SET jobagentid = %(new_pid)s
 WHERE jobagentid = %(old_pid)s AND jobid = ANY(%(job_ids)s)
RETURNING jobid

-- name: end_old_session
-- The old service session, if the server still has it (a partition): it holds this
-- agent's advert, nothing else does.
SELECT pg_catalog.pg_terminate_backend(l.pid)
  FROM pg_catalog.pg_locks l
 WHERE l.pid = %(old_pid)s AND l.locktype = 'advisory' AND l.granted
   AND l.classid = %(advert_class)s::oid AND l.objsubid = 2
   AND l.pid <> pg_catalog.pg_backend_pid()

-- name: unregister_agent
DELETE FROM pgagent.pga_jobagent WHERE jagpid = %(pid)s

-- ---- dead agents ----------------------------------------------------------------------

-- name: other_agents
{{agent_sightings}}

-- name: dead_agent_runs
-- The running runs of an agent judged dead, with the step each one is at.
SELECT l.jlgid, l.jlgjobid, sl.jslid, COALESCE(st.jstkind, ''), COALESCE(st.jstconnstr, '')
  FROM pgagent.pga_job j
  JOIN pgagent.pga_joblog l ON l.jlgjobid = j.jobid AND l.jlgstatus = 'r'
  LEFT JOIN pgagent.pga_jobsteplog sl ON sl.jsljlgid = l.jlgid AND sl.jslstatus = 'r'
  LEFT JOIN pgagent.pga_jobstep st ON st.jstid = sl.jsljstid
 WHERE j.jobagentid = %(pid)s
 ORDER BY l.jlgid

-- name: run_backends
-- Sessions working for the given runs (pyagent names a step's session after its run while
-- the step runs: application_name 'pyagent run <jlgid> (job …, step …)'), and the dead
-- agent's own service session when the server still has it.
SELECT s.pid, s.application_name, s.state
  FROM pg_catalog.pg_stat_activity s
 WHERE s.pid <> pg_catalog.pg_backend_pid()
   AND (s.application_name LIKE ANY(%(patterns)s)
        OR s.pid IN (SELECT l.pid FROM pg_catalog.pg_locks l
                      WHERE l.pid = %(agent_pid)s AND l.locktype = 'advisory'
                        AND l.granted AND l.classid = %(advert_class)s::oid
                        AND l.objsubid = 2))

-- name: backends_left
-- Which of these sessions are still there, and whether each is running a statement.
SELECT s.pid, s.state = 'active'
  FROM pg_catalog.pg_stat_activity s
 WHERE s.pid = ANY(%(pids)s)

-- name: cancel_backend
SELECT pg_catalog.pg_cancel_backend(%(pid)s)

-- name: terminate_backend
SELECT pg_catalog.pg_terminate_backend(%(pid)s)

-- name: lock_dead_agent
-- The first statement of clearing a dead agent: its row, if nobody renewed it since the
-- verdict (an agent back in time keeps its jobs) and nobody else is clearing or adopting
-- it right now.
SELECT 1 FROM pgagent.pga_jobagent
 WHERE jagpid = %(pid)s AND jaglogintime = %(seen)s
   FOR UPDATE SKIP LOCKED

-- name: abort_zombie_logs
-- Its running logs become 'd'; each running step's output says why (%(jlgids)s and
-- %(outputs)s are parallel arrays).
WITH running AS (
    UPDATE pgagent.pga_joblog l SET jlgstatus = 'd'
      FROM pgagent.pga_job j
     WHERE l.jlgjobid = j.jobid AND j.jobagentid = %(pid)s AND l.jlgstatus = 'r'
    RETURNING l.jlgid
), why AS (
    SELECT w.jlgid, w.output
      FROM unnest(%(jlgids)s::int4[], %(outputs)s::text[]) AS w(jlgid, output)
)
UPDATE pgagent.pga_jobsteplog sl
   SET jslstatus = 'd',
       jsloutput = COALESCE(NULLIF(sl.jsloutput, ''), (SELECT why.output FROM why
                                                       WHERE why.jlgid = sl.jsljlgid))
  FROM running
 WHERE sl.jsljlgid = running.jlgid AND sl.jslstatus = 'r'

-- name: zombie_jobs
SELECT jobid FROM pgagent.pga_job WHERE jobagentid = %(pid)s

-- name: release_zombie_job
-- A dead agent's job: if its run started, the next run is scheduled (by the schema, or
-- %(next_run)s when pyagent computed it); if the agent died before starting it, it stays due.
UPDATE pgagent.pga_job j SET jobagentid = NULL,
       jobnextrun = CASE WHEN {{run_started_since_claim}}
                         THEN %(next_run)s::timestamptz ELSE j.jobnextrun END
 WHERE jobid = %(job_id)s AND jobagentid = %(pid)s

-- name: job_comment
-- A dead agent's job: its comment, for its own time zone (@TIMEZONE).
SELECT jobdesc FROM pgagent.pga_job WHERE jobid = %(job_id)s

-- name: delete_agent
DELETE FROM pgagent.pga_jobagent WHERE jagpid = %(pid)s

-- ---- claims ---------------------------------------------------------------------------

-- fragment: claim_due
-- Claims up to %(limit)s due jobs for this agent (an agent that was cleared claims nothing:
-- the foreign key to its pga_jobagent row refuses the claim). SKIP LOCKED lets several
-- agents claim concurrently; the outer re-check of jobagentid keeps a job from being
-- claimed twice even against agents (like the C pgAgent) that claim with a plain
-- conditional UPDATE.
due AS (
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

-- fragment: claimed_rows
SELECT 'claim' AS kind, jobid::int8 AS id, jobnextrun AS ts,
       EXTRACT(EPOCH FROM (now() - jobnextrun))::float8 AS seconds,  -- pickup lag
       NULL::int8 AS num, NULL::bool AS flag, NULL::bool AS flag2, NULL::text AS label
  FROM claimed

-- name: claim_jobs
-- A full poll in one round trip: the lease renewal (and how many other agents there are),
-- the claim (see claim_due), when the next unclaimed job is due (seconds from the server's
-- now) and every other agent's row for the liveness judgement. No 'lease' row: this
-- agent's row is gone (another agent cleared it).
WITH renewed AS (
    UPDATE pgagent.pga_jobagent SET jaglogintime = now()
     WHERE jagpid = %(pid)s
    RETURNING jaglogintime
), {{claim_due}}
{{claimed_rows}}
UNION ALL
SELECT 'lease', NULL, r.jaglogintime, NULL,
       (SELECT count(*) FROM pgagent.pga_jobagent o WHERE o.jagpid <> %(pid)s), NULL, NULL,
       NULL
  FROM renewed r
UNION ALL
SELECT 'next', NULL, NULL, EXTRACT(EPOCH FROM (min(jobnextrun) - now()))::float8, NULL,
       NULL, NULL, NULL
  FROM pgagent.pga_job
 WHERE jobenabled AND jobagentid IS NULL AND jobnextrun IS NOT NULL
   AND (jobhostagent = '' OR jobhostagent = %(station)s)
   AND jobid NOT IN (SELECT jobid FROM due)
UNION ALL
{{agent_sightings}}

-- name: claim_backlog
-- While a backlog of due jobs is being worked off: only the claim, which then does not
-- look at the rest of the table at all (the lease keeper renews meanwhile).
WITH {{claim_due}}
{{claimed_rows}}

-- ---- one run --------------------------------------------------------------------------

-- fragment: insert_run_log
-- The run's pga_joblog row ('r'), only while this agent (%(owner)s) still holds the claim.
log AS (
    INSERT INTO pgagent.pga_joblog (jlgid, jlgjobid, jlgstatus)
    SELECT nextval('pgagent.pga_joblog_jlgid_seq'), %(job_id)s, 'r'
     WHERE EXISTS (SELECT 1 FROM pgagent.pga_job
                    WHERE jobid = %(job_id)s AND jobagentid = %(owner)s)
    RETURNING jlgid
)

-- name: start_run
-- The run's pga_joblog row ('r', see insert_run_log: no row at all when the claim was
-- lost), the job's comment (where per-job options such as @JOB_TIMEOUT=…; live) and its
-- enabled steps in pgAgent's order, in one round trip. A job without steps gives one row
-- with NULL step columns.
WITH {{insert_run_log}}
SELECT log.jlgid, j.jobdesc,
       s.jstid, s.jstname, s.jstkind, s.jstcode, s.jstconnstr, s.jstdbname, s.jstonerror,
       s.jstdesc
  FROM log
  LEFT JOIN pgagent.pga_job j ON j.jobid = %(job_id)s
  LEFT JOIN pgagent.pga_jobstep s ON s.jstjobid = %(job_id)s AND s.jstenabled
 ORDER BY s.jstname, s.jstid

-- fragment: run_still_held
-- The run's log row is still running. An agent that clears another (the sweep, pgAgent's
-- start-up clean-up) and a cancel request mark the run 'd' in the same transaction as they
-- release its job or mark it, so 'r' means the run is still this agent's (%(owner)s is
-- not needed to tell).
EXISTS (SELECT 1 FROM pgagent.pga_joblog l
         WHERE l.jlgid = %(jlgid)s AND l.jlgstatus = 'r')

-- name: start_step
-- No row when the step was deleted, or the run is no longer this agent's (see run_held).
INSERT INTO pgagent.pga_jobsteplog (jslid, jsljlgid, jsljstid, jslstatus)
SELECT nextval('pgagent.pga_jobsteplog_jslid_seq'), %(jlgid)s, jstid, 'r'
  FROM pgagent.pga_jobstep
 WHERE jstid = %(step_id)s AND {{run_still_held}}
RETURNING jslid

-- name: run_held
SELECT {{run_still_held}}

-- name: finish_step
-- Guarded by jslstatus = 'r': a step already marked aborted by a sweep stays aborted.
UPDATE pgagent.pga_jobsteplog
   SET jslduration = now() - jslstart, jslresult = %(result)s,
       jslstatus = %(status)s, jsloutput = %(output)s
 WHERE jslid = %(jslid)s AND jslstatus = 'r'

-- name: finish_run
-- Close the run's log and release the job in one statement. If the schema's next-run
-- function fails, nothing is changed and the agent falls back (release_job with the next
-- run it computed itself).
WITH log AS (
{{close_joblog}}
)
{{release_claimed_job}}

-- name: abort_step
UPDATE pgagent.pga_jobsteplog
   SET jslstatus = 'd', jslduration = now() - jslstart, jslresult = %(result)s,
       jsloutput = %(output)s
 WHERE jslid = %(jslid)s AND jslstatus = 'r'

-- name: failed_step
-- For the warning a failed run gets: the job's name and the run's last step log
-- that did not succeed (none: NULL step columns).
SELECT j.jobname, s.jstid, s.jstname, l.jslstatus, l.jslresult, l.jsloutput
  FROM pgagent.pga_job j
  LEFT JOIN pgagent.pga_jobsteplog l ON l.jsljlgid = %(jlgid)s AND l.jslstatus <> 's'
  LEFT JOIN pgagent.pga_jobstep s ON s.jstid = l.jsljstid
 WHERE j.jobid = %(job_id)s
 ORDER BY l.jslid DESC NULLS LAST
 LIMIT 1

-- name: finish_joblog
{{close_joblog}}

-- name: release_job
{{release_claimed_job}}

-- name: release_unstarted_job
-- A claimed job whose run never started (interrupted before its log row existed): give
-- the claim back and leave jobnextrun as it is, so the run still happens.
UPDATE pgagent.pga_job SET jobagentid = NULL
 WHERE jobid = %(job_id)s AND jobagentid = ANY(%(pids)s)

-- name: set_local_timezone
-- Run first in a release's transaction for a job with its own time zone (@TIMEZONE).
{{local_timezone}}

-- ---- the fallback next-run computation ------------------------------------------------

-- name: read_session_clock
{{session_clock}}

-- name: job_schedules
SELECT jscid, jscstart, jscend, jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths
  FROM pgagent.pga_schedule
 WHERE jscenabled AND jscjobid = %(job_id)s

-- name: schedule_exceptions
SELECT jexscid, jexdate, jextime
  FROM pgagent.pga_exception
 WHERE jexscid = ANY(%(schedule_ids)s)

-- ---- housekeeping ---------------------------------------------------------------------

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

-- ---- step rights (--step-rights author; docs/security.md) ------------------------------

-- fragment: author_trusted
-- An author (a pg_roles row r, NULL when the role is gone) is trusted when it is the
-- agent's own role, a superuser now, or now a member of one of the trusted roles.
coalesce(r.rolname IN (session_user, current_user) OR r.rolsuper
         OR EXISTS (SELECT 1 FROM trusted t
                     WHERE pg_catalog.pg_has_role(r.oid, t.oid, 'MEMBER')), false)

-- name: authorship_facts
-- At start-up under --step-rights author: are pyagent's authorship records installed and
-- readable, are their triggers enabled, and which of the trusted roles do not exist.
WITH ns AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pyagent'
), tbl AS (
    SELECT c.oid FROM pg_catalog.pg_class c JOIN ns ON c.relnamespace = ns.oid
     WHERE c.relname = 'authorship'
)
SELECT EXISTS (SELECT 1 FROM tbl) AS installed,
       coalesce((SELECT pg_catalog.has_schema_privilege(ns.oid, 'USAGE')
                        AND pg_catalog.has_table_privilege(tbl.oid, 'SELECT')
                        AND pg_catalog.has_function_privilege(
                                'pyagent.step_fingerprint(int4, text, text, text, text, bool)',
                                'EXECUTE')
                        AND pg_catalog.has_function_privilege(
                                'pyagent.job_fingerprint(bool, text)', 'EXECUTE')
                   FROM ns, tbl), false) AS readable,
       (SELECT count(*) FROM pg_catalog.pg_trigger g
         WHERE g.tgname IN ('pyagent_authorship_job', 'pyagent_authorship_step')
           AND g.tgenabled = 'A')::int AS triggers_always,
       ARRAY(SELECT t FROM unnest(%(trusted_roles)s::text[]) AS t
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = t))
           AS unknown_roles

-- name: start_run_with_authors
-- start_run (keep the two in step) plus, for each step, who last changed it and the job
-- (pyagent.authorship), whether that record still matches the row (its fingerprint) and
-- whether the author is trusted (author_trusted, worked out once per record). One round
-- trip, as start_run.
WITH {{insert_run_log}}, trusted AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY(%(trusted_roles)s::text[])
), records AS (
    SELECT a.kind, a.id, a.author, a.fingerprint, {{author_trusted}} AS trusted
      FROM pyagent.authorship a
      LEFT JOIN pg_catalog.pg_roles r ON r.rolname = a.author
     WHERE a.jobid = %(job_id)s
)
SELECT log.jlgid, j.jobdesc,
       s.jstid, s.jstname, s.jstkind, s.jstcode, s.jstconnstr, s.jstdbname, s.jstonerror,
       s.jstdesc,
       sa.author,
       sa.fingerprint = pyagent.step_fingerprint(s.jstjobid, s.jstkind, s.jstcode,
                                                 s.jstconnstr, s.jstdbname, s.jstenabled),
       sa.trusted,
       ja.author,
       ja.fingerprint = pyagent.job_fingerprint(j.jobenabled, j.jobhostagent),
       ja.trusted
  FROM log
  LEFT JOIN pgagent.pga_job j ON j.jobid = %(job_id)s
  LEFT JOIN pgagent.pga_jobstep s ON s.jstjobid = %(job_id)s AND s.jstenabled
  LEFT JOIN records ja ON ja.kind = 'j' AND ja.id = j.jobid
  LEFT JOIN records sa ON sa.kind = 's' AND sa.id = s.jstid
 ORDER BY s.jstname, s.jstid
