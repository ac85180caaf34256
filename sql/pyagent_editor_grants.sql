-- What `pyagent schema grant-editor DSN ROLE` grants a job editor: exactly what pgAdmin's
-- pgAgent dialogs need (docs/schema.md, "A pgAdmin role"; the pgagent block is that
-- section's GRANTs), and nothing that could forge authorship: no ownership, no TRIGGER,
-- no CREATE, and no write privilege in schema pyagent. {role} is the grantee, composed as
-- a quoted identifier; nothing else is ever substituted.

-- name: pgagent
GRANT USAGE ON SCHEMA pgagent TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE
   ON pgagent.pga_job, pgagent.pga_jobstep, pgagent.pga_schedule, pgagent.pga_exception
   TO {role};
GRANT SELECT ON pgagent.pga_jobclass, pgagent.pga_jobagent, pgagent.pga_joblog, pgagent.pga_jobsteplog
   TO {role};
GRANT USAGE ON SEQUENCE pgagent.pga_job_jobid_seq, pgagent.pga_jobstep_jstid_seq,
   pgagent.pga_schedule_jscid_seq, pgagent.pga_exception_jexid_seq
   TO {role};

-- name: authorship
-- Read the change log (`pyagent jobs changes`, `history`); pyagent.authorship and schema
-- pyagent are readable by PUBLIC already.
GRANT SELECT ON pyagent.change_log TO {role};

-- name: role_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %(role)s)

-- name: risks
-- What would let this role forge or erase authorship, or turn what others run against
-- them; grant-editor names each (it revokes none: they were granted on purpose, or come
-- with membership). %(role)s is bound.
WITH r AS (
    SELECT oid, rolname, rolsuper FROM pg_catalog.pg_roles WHERE rolname = %(role)s
), tables AS (
    SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relowner
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE (n.nspname = 'pgagent'
            AND c.relname IN ('pga_job', 'pga_jobstep', 'pga_schedule', 'pga_exception'))
        OR (n.nspname = 'pyagent' AND c.relname IN ('authorship', 'change_log', 'settings'))
), schemas AS (
    SELECT oid, nspname, nspowner FROM pg_catalog.pg_namespace
     WHERE nspname IN ('pgagent', 'pyagent')
)
SELECT 'is a superuser' FROM r WHERE r.rolsuper
UNION ALL
SELECT 'is a member of ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(t.relowner))
       || ', which owns ' || t.name || ' (an owner can disable or drop its triggers)'
  FROM r, tables t
 WHERE NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, t.relowner, 'MEMBER')
UNION ALL
SELECT 'is a member of ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(s.nspowner))
       || ', which owns schema ' || s.nspname
  FROM r, schemas s
 WHERE NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, s.nspowner, 'MEMBER')
UNION ALL
SELECT 'is a member of pg_write_all_data (it can write pyagent.authorship)'
  FROM r, pg_catalog.pg_roles w
 WHERE NOT r.rolsuper AND w.rolname = 'pg_write_all_data'
   AND pg_catalog.pg_has_role(r.oid, w.oid, 'MEMBER')
UNION ALL
SELECT 'holds ' || p.privilege || ' on ' || t.name
  FROM r, tables t,
       (VALUES ('TRIGGER'), ('TRUNCATE'), ('INSERT'), ('UPDATE'), ('DELETE')) AS p(privilege)
 WHERE NOT r.rolsuper
   AND NOT pg_catalog.pg_has_role(r.oid, t.relowner, 'MEMBER')
   AND (p.privilege IN ('TRIGGER', 'TRUNCATE') OR t.name LIKE 'pyagent.%%')
   AND pg_catalog.has_table_privilege(r.oid, t.oid, p.privilege)
UNION ALL
SELECT 'holds CREATE on schema ' || s.nspname
  FROM r, schemas s
 WHERE NOT r.rolsuper AND NOT pg_catalog.pg_has_role(r.oid, s.nspowner, 'MEMBER')
   AND pg_catalog.has_schema_privilege(r.oid, s.oid, 'CREATE')
