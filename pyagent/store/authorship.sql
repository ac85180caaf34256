-- pyagent's authorship records (schema pyagent, sql/pyagent_authorship.sql) as the
-- management commands read and write them: who last changed each job and step, the change
-- log, and adoption by the schema's owner. Bound parameters only.

-- fragment: step_is_current
-- The record still vouches for the step row s as it is now.
a.fingerprint = pyagent.step_fingerprint(s.jstjobid, s.jstkind, s.jstcode, s.jstconnstr,
                                         s.jstdbname, s.jstenabled)

-- fragment: job_is_current
a.fingerprint = pyagent.job_fingerprint(j.jobenabled, j.jobhostagent)

-- name: access
-- Are the records installed, and may this role read them and the change log, and write
-- them (adopt)? Catalog reads only: works without USAGE on schema pyagent.
WITH ns AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pyagent'
), rel AS (
    SELECT c.relname, c.oid FROM pg_catalog.pg_class c JOIN ns ON c.relnamespace = ns.oid
     WHERE c.relname IN ('authorship', 'change_log')
)
SELECT EXISTS (SELECT 1 FROM rel WHERE relname = 'authorship') AS installed,
       coalesce((SELECT pg_catalog.has_schema_privilege(ns.oid, 'USAGE') FROM ns), false)
           AS usage,
       coalesce((SELECT pg_catalog.has_table_privilege(oid, 'SELECT') FROM rel
                  WHERE relname = 'authorship'), false) AS read_authors,
       coalesce((SELECT pg_catalog.has_table_privilege(oid, 'SELECT') FROM rel
                  WHERE relname = 'change_log'), false) AS read_changes,
       coalesce((SELECT pg_catalog.has_table_privilege(oid, 'INSERT')
                        AND pg_catalog.has_table_privilege(oid, 'UPDATE') FROM rel
                  WHERE relname = 'authorship'), false) AS write_authors

-- name: authors
-- The records of these jobs and of their steps, and whether each still matches its row.
SELECT a.kind, a.id, a.jobid, a.author, a.changed_at,
       CASE a.kind WHEN 'j' THEN {{job_is_current}} ELSE {{step_is_current}} END AS current
  FROM pyagent.authorship a
  LEFT JOIN pgagent.pga_job j ON a.kind = 'j' AND j.jobid = a.id
  LEFT JOIN pgagent.pga_jobstep s ON a.kind = 's' AND s.jstid = a.id
 WHERE a.jobid = ANY(%(jobids)s::int4[])

-- name: changes
-- The change log, newest first; a NULL jobid means every job. A deleted job keeps the name
-- it had.
SELECT c.id, c.changed_at, c.author, c.jobid, coalesce(j.jobname, c.jobname), c.object,
       c.object_id, c.object_name, c.action, c.fields, c.decides
  FROM pyagent.change_log c
  LEFT JOIN pgagent.pga_job j ON j.jobid = c.jobid
 WHERE %(jobid)s::int4 IS NULL OR c.jobid = %(jobid)s::int4
 ORDER BY c.id DESC
 LIMIT %(limit)s

-- name: run_authors
-- For each run: the last change to what decides what runs (a step's code, kind, target,
-- on/off; the job's on/off, host agent) made before the run started, and its author.
SELECT l.jlgid, c.author, c.changed_at
  FROM pgagent.pga_joblog l
  CROSS JOIN LATERAL (
        SELECT c.author, c.changed_at
          FROM pyagent.change_log c
         WHERE c.jobid = l.jlgjobid AND c.decides AND c.changed_at <= l.jlgstart
         ORDER BY c.changed_at DESC, c.id DESC
         LIMIT 1) c
 WHERE l.jlgid = ANY(%(jlgids)s::int4[])

-- name: unattributed_jobs
-- Jobs that have, for the job itself or any of its steps, no record that matches the row.
SELECT j.jobid
  FROM pgagent.pga_job j
 WHERE NOT EXISTS (SELECT 1 FROM pyagent.authorship a
                    WHERE a.kind = 'j' AND a.id = j.jobid AND {{job_is_current}})
    OR EXISTS (SELECT 1 FROM pgagent.pga_jobstep s
                WHERE s.jstjobid = j.jobid
                  AND NOT EXISTS (SELECT 1 FROM pyagent.authorship a
                                   WHERE a.kind = 's' AND a.id = s.jstid
                                     AND {{step_is_current}}))
 ORDER BY j.jobid

-- name: role_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %(role)s)

-- name: session_role
SELECT session_user::text

-- name: lock_job
-- Adoption: the job row, locked until the adoption commits or is abandoned, so what was
-- shown is what is attributed.
SELECT j.jobid, j.jobname, j.jobenabled, j.jobhostagent, a.author, {{job_is_current}}
  FROM pgagent.pga_job j
  LEFT JOIN pyagent.authorship a ON a.kind = 'j' AND a.id = j.jobid
 WHERE j.jobid = %(jobid)s
   FOR UPDATE OF j

-- name: lock_steps
SELECT s.jstid, s.jstname, s.jstenabled, s.jstkind, s.jstdbname::text, s.jstconnstr,
       s.jstcode, a.author, {{step_is_current}}
  FROM pgagent.pga_jobstep s
  LEFT JOIN pyagent.authorship a ON a.kind = 's' AND a.id = s.jstid
 WHERE s.jstjobid = %(jobid)s
 ORDER BY s.jstname, s.jstid
   FOR UPDATE OF s

-- name: adopt_job
-- Attribute the job and every one of its steps, as they are now, to %(author)s.
INSERT INTO pyagent.authorship AS a (kind, id, jobid, author, changed_at, fingerprint)
SELECT 'j', j.jobid, j.jobid, %(author)s, now(),
       pyagent.job_fingerprint(j.jobenabled, j.jobhostagent)
  FROM pgagent.pga_job j
 WHERE j.jobid = %(jobid)s
UNION ALL
SELECT 's', s.jstid, s.jstjobid, %(author)s, now(),
       pyagent.step_fingerprint(s.jstjobid, s.jstkind, s.jstcode, s.jstconnstr, s.jstdbname,
                                s.jstenabled)
  FROM pgagent.pga_jobstep s
 WHERE s.jstjobid = %(jobid)s
ON CONFLICT (kind, id) DO UPDATE
   SET jobid = EXCLUDED.jobid, author = EXCLUDED.author, changed_at = EXCLUDED.changed_at,
       fingerprint = EXCLUDED.fingerprint

-- name: log_adoption
INSERT INTO pyagent.change_log
       (author, jobid, jobname, object, object_id, object_name, action, fields, decides)
SELECT session_user, j.jobid, j.jobname, 'job', j.jobid, j.jobname, 'adopt',
       ARRAY['attributed to ' || %(author)s], true
  FROM pgagent.pga_job j
 WHERE j.jobid = %(jobid)s
