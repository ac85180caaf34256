-- Optional pyagent extra: authorship. Records, for every job and step, which role last
-- changed what decides what runs, and keeps a change log of jobs, steps, schedules and
-- exceptions. `pyagent run --step-rights author` reads it to run each step with no more
-- rights than its author (docs/security.md). Not part of pgAgent's schema: pgAdmin and
-- the C pgAgent ignore it, and nothing in schema pgagent is changed except the four
-- triggers added to its tables. Safe to run again; run it as the owner of the pgagent
-- tables (or a superuser).
--
-- Why it cannot be forged by a job editor (a role with DML on the pgagent tables):
-- - The records live in schema pyagent, owned by the installing role; job editors get
--   no write privilege there. The triggers write through SECURITY DEFINER functions with
--   a pinned search_path and only static SQL.
-- - The author is session_user: the role that logged in. SET ROLE does not change it, and
--   SET SESSION AUTHORIZATION needs a superuser's login.
-- - The triggers are ENABLE ALWAYS, so they also fire under session_replication_role =
--   replica; disabling or dropping them needs ownership of the pgagent tables.
-- - Each record holds a fingerprint of what it vouches for. A row changed while the
--   recording was bypassed (a trigger disabled by the owner, a restore without triggers)
--   no longer matches its record, and the agent treats it as having no author.

DO $check$
DECLARE
    owner_name name;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(nspowner) INTO owner_name
      FROM pg_catalog.pg_namespace WHERE nspname = 'pyagent';
    IF owner_name IS NOT NULL AND owner_name <> current_user
       AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = owner_name) THEN
        -- Whoever owns the schema could replace the records: it must be ours or a
        -- superuser's.
        RAISE EXCEPTION 'schema pyagent exists and is owned by role %, not by %', owner_name,
            current_user
            USING HINT = 'run pyagent schema add-extras as that role, or drop the schema';
    END IF;
END
$check$;

CREATE SCHEMA IF NOT EXISTS pyagent;
COMMENT ON SCHEMA pyagent IS 'pyagent: authorship of pgAgent jobs and their change log';
REVOKE ALL ON SCHEMA pyagent FROM PUBLIC;
GRANT USAGE ON SCHEMA pyagent TO PUBLIC;

-- Who last changed what decides what runs: for a job ('j') its on/off switch and host
-- agent, for a step ('s') its job, kind, code, connection string, database and on/off.
CREATE TABLE IF NOT EXISTS pyagent.authorship (
    kind        "char"      NOT NULL CHECK (kind IN ('j', 's')),
    id          int4        NOT NULL,
    jobid       int4        NOT NULL,
    author      text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    fingerprint bytea       NOT NULL,
    PRIMARY KEY (kind, id)
);
-- The agent reads a job's records (the job's and its steps') by job when a run starts.
CREATE INDEX IF NOT EXISTS authorship_job ON pyagent.authorship (jobid);
COMMENT ON TABLE pyagent.authorship IS
    'pyagent: the role (session_user) that last changed what decides what a job or step runs';
REVOKE ALL ON pyagent.authorship FROM PUBLIC;
-- Role names, ids, times and a hash: what the agent reads to decide how a step runs.
GRANT SELECT ON pyagent.authorship TO PUBLIC;

CREATE TABLE IF NOT EXISTS pyagent.change_log (
    id          int8        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    author      text        NOT NULL,
    jobid       int4        NOT NULL,
    jobname     text        NULL,
    object      text        NOT NULL CHECK (object IN ('job', 'step', 'schedule', 'exception')),
    object_id   int4        NOT NULL,
    object_name text        NULL,
    action      text        NOT NULL CHECK (action IN ('create', 'change', 'delete', 'adopt')),
    fields      text[]      NOT NULL DEFAULT '{}',
    -- The change moved authorship: it touched what decides what runs.
    decides     bool        NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS change_log_job ON pyagent.change_log (jobid, changed_at);
CREATE INDEX IF NOT EXISTS change_log_age ON pyagent.change_log (changed_at);
COMMENT ON TABLE pyagent.change_log IS
    'pyagent: who changed which pgAgent job, what and when (kept for pyagent.settings.change_log_retention)';
-- Holds job and step names: readable by the owner and the roles granted it
-- (pyagent schema grant-editor).
REVOKE ALL ON pyagent.change_log FROM PUBLIC;

CREATE TABLE IF NOT EXISTS pyagent.settings (
    one_row              bool     NOT NULL DEFAULT true PRIMARY KEY CHECK (one_row),
    change_log_retention interval NOT NULL DEFAULT '365 days'
        CHECK (change_log_retention > '0'::interval)
);
INSERT INTO pyagent.settings (one_row) VALUES (true) ON CONFLICT DO NOTHING;
COMMENT ON TABLE pyagent.settings IS 'pyagent: settings of the authorship extra';
REVOKE ALL ON pyagent.settings FROM PUBLIC;
GRANT SELECT ON pyagent.settings TO PUBLIC;

-- What a record vouches for. Plain arguments (not the table's row type), so that nothing
-- in schema pyagent depends on schema pgagent's types.
CREATE OR REPLACE FUNCTION pyagent.step_fingerprint(
    jobid int4, kind text, code text, connstr text, dbname text, enabled bool
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    -- STABLE, as the text form of a row is: so that it is inlined into the caller's query.
    -- A row's text form quotes what needs quoting, so different values never give the
    -- same text.
    SELECT pg_catalog.sha256(pg_catalog.convert_to(
        ROW($1, $2, $3, $4, $5, $6)::text, 'UTF8'))
$fn$;

CREATE OR REPLACE FUNCTION pyagent.job_fingerprint(enabled bool, hostagent text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(ROW($1, $2)::text, 'UTF8'))
$fn$;

-- One change log entry, and a bounded, non-blocking trim of entries past the retention.
-- Called only by the trigger functions below (as their owner).
-- The job's name is read from pga_job, or given when the job is being deleted.
CREATE OR REPLACE FUNCTION pyagent.log_change(
    p_jobid int4, p_object text, p_object_id int4, p_object_name text, p_action text,
    p_fields text[], p_decides bool, p_jobname text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO pyagent.change_log
           (author, jobid, jobname, object, object_id, object_name, action, fields, decides)
    SELECT session_user, p_jobid, coalesce(p_jobname, j.jobname), p_object, p_object_id, p_object_name, p_action,
           p_fields, p_decides
      FROM (SELECT 1) one
      LEFT JOIN pgagent.pga_job j ON j.jobid = p_jobid;
    DELETE FROM pyagent.change_log
     WHERE id IN (SELECT c.id FROM pyagent.change_log c, pyagent.settings s
                   WHERE c.changed_at < now() - s.change_log_retention
                   ORDER BY c.changed_at
                   LIMIT 100
                     FOR UPDATE OF c SKIP LOCKED);
END;
$fn$;

CREATE OR REPLACE FUNCTION pyagent.record_job_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    fields text[] := '{}';
    decides bool := true;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM pyagent.authorship WHERE kind = 'j' AND id = OLD.jobid;
        PERFORM pyagent.log_change(OLD.jobid, 'job', OLD.jobid, OLD.jobname, 'delete', '{}',
                                   true, OLD.jobname);
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.jobid IS DISTINCT FROM OLD.jobid THEN fields := fields || 'id'::text; END IF;
        IF NEW.jobenabled IS DISTINCT FROM OLD.jobenabled THEN
            fields := fields || 'enabled'::text;
        END IF;
        IF NEW.jobhostagent IS DISTINCT FROM OLD.jobhostagent THEN
            fields := fields || 'host agent'::text;
        END IF;
        decides := cardinality(fields) > 0;
        IF NEW.jobname IS DISTINCT FROM OLD.jobname THEN fields := fields || 'name'::text; END IF;
        IF NEW.jobdesc IS DISTINCT FROM OLD.jobdesc THEN
            fields := fields || 'comment'::text;
        END IF;
        IF NEW.jobjclid IS DISTINCT FROM OLD.jobjclid THEN
            fields := fields || 'class'::text;
        END IF;
        IF cardinality(fields) = 0 THEN
            RETURN NULL;
        END IF;
        IF NEW.jobid <> OLD.jobid THEN
            DELETE FROM pyagent.authorship WHERE kind = 'j' AND id = OLD.jobid;
        END IF;
    END IF;
    IF decides THEN
        INSERT INTO pyagent.authorship AS a (kind, id, jobid, author, changed_at, fingerprint)
        VALUES ('j', NEW.jobid, NEW.jobid, session_user, now(),
                pyagent.job_fingerprint(NEW.jobenabled, NEW.jobhostagent))
        ON CONFLICT (kind, id) DO UPDATE
           SET jobid = EXCLUDED.jobid, author = EXCLUDED.author,
               changed_at = EXCLUDED.changed_at, fingerprint = EXCLUDED.fingerprint;
    END IF;
    PERFORM pyagent.log_change(NEW.jobid, 'job', NEW.jobid, NEW.jobname,
                               CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'change' END,
                               fields, decides);
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION pyagent.record_step_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    fields text[] := '{}';
    decides bool := true;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM pyagent.authorship WHERE kind = 's' AND id = OLD.jstid;
        PERFORM pyagent.log_change(OLD.jstjobid, 'step', OLD.jstid, OLD.jstname, 'delete',
                                   '{}', true);
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.jstid IS DISTINCT FROM OLD.jstid THEN fields := fields || 'id'::text; END IF;
        IF NEW.jstjobid IS DISTINCT FROM OLD.jstjobid THEN
            fields := fields || 'job'::text;
        END IF;
        IF NEW.jstkind IS DISTINCT FROM OLD.jstkind THEN fields := fields || 'kind'::text; END IF;
        IF NEW.jstcode IS DISTINCT FROM OLD.jstcode THEN fields := fields || 'code'::text; END IF;
        IF NEW.jstconnstr IS DISTINCT FROM OLD.jstconnstr THEN
            fields := fields || 'connection'::text;
        END IF;
        IF NEW.jstdbname IS DISTINCT FROM OLD.jstdbname THEN
            fields := fields || 'database'::text;
        END IF;
        IF NEW.jstenabled IS DISTINCT FROM OLD.jstenabled THEN
            fields := fields || 'enabled'::text;
        END IF;
        decides := cardinality(fields) > 0;
        IF NEW.jstname IS DISTINCT FROM OLD.jstname THEN fields := fields || 'name'::text; END IF;
        IF NEW.jstdesc IS DISTINCT FROM OLD.jstdesc THEN
            fields := fields || 'description'::text;
        END IF;
        IF NEW.jstonerror IS DISTINCT FROM OLD.jstonerror THEN
            fields := fields || 'on error'::text;
        END IF;
        IF cardinality(fields) = 0 THEN
            RETURN NULL;
        END IF;
        IF NEW.jstid <> OLD.jstid THEN
            DELETE FROM pyagent.authorship WHERE kind = 's' AND id = OLD.jstid;
        END IF;
    END IF;
    IF decides THEN
        INSERT INTO pyagent.authorship AS a (kind, id, jobid, author, changed_at, fingerprint)
        VALUES ('s', NEW.jstid, NEW.jstjobid, session_user, now(),
                pyagent.step_fingerprint(NEW.jstjobid, NEW.jstkind, NEW.jstcode,
                                         NEW.jstconnstr, NEW.jstdbname, NEW.jstenabled))
        ON CONFLICT (kind, id) DO UPDATE
           SET jobid = EXCLUDED.jobid, author = EXCLUDED.author,
               changed_at = EXCLUDED.changed_at, fingerprint = EXCLUDED.fingerprint;
    END IF;
    PERFORM pyagent.log_change(NEW.jstjobid, 'step', NEW.jstid, NEW.jstname,
                               CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'change' END,
                               fields, decides);
    RETURN NULL;
END;
$fn$;

-- Schedules and exceptions decide when a job runs, not what: logged, no authorship.
CREATE OR REPLACE FUNCTION pyagent.record_schedule_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    fields text[] := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pyagent.log_change(OLD.jscjobid, 'schedule', OLD.jscid, OLD.jscname, 'delete',
                                   '{}', false);
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.jscjobid IS DISTINCT FROM OLD.jscjobid THEN fields := fields || 'job'::text; END IF;
        IF NEW.jscname IS DISTINCT FROM OLD.jscname THEN fields := fields || 'name'::text; END IF;
        IF NEW.jscdesc IS DISTINCT FROM OLD.jscdesc THEN
            fields := fields || 'description'::text;
        END IF;
        IF NEW.jscenabled IS DISTINCT FROM OLD.jscenabled THEN
            fields := fields || 'enabled'::text;
        END IF;
        IF NEW.jscstart IS DISTINCT FROM OLD.jscstart THEN
            fields := fields || 'start'::text;
        END IF;
        IF NEW.jscend IS DISTINCT FROM OLD.jscend THEN fields := fields || 'end'::text; END IF;
        IF NEW.jscminutes IS DISTINCT FROM OLD.jscminutes THEN
            fields := fields || 'minutes'::text;
        END IF;
        IF NEW.jschours IS DISTINCT FROM OLD.jschours THEN
            fields := fields || 'hours'::text;
        END IF;
        IF NEW.jscweekdays IS DISTINCT FROM OLD.jscweekdays THEN
            fields := fields || 'weekdays'::text;
        END IF;
        IF NEW.jscmonthdays IS DISTINCT FROM OLD.jscmonthdays THEN
            fields := fields || 'monthdays'::text;
        END IF;
        IF NEW.jscmonths IS DISTINCT FROM OLD.jscmonths THEN
            fields := fields || 'months'::text;
        END IF;
        IF cardinality(fields) = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pyagent.log_change(NEW.jscjobid, 'schedule', NEW.jscid, NEW.jscname,
                               CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'change' END,
                               fields, false);
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION pyagent.record_exception_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    row_now pgagent.pga_exception;
    fields text[] := '{}';
    job int4;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_now := OLD;
    ELSE
        row_now := NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.jexscid IS DISTINCT FROM OLD.jexscid THEN
            fields := fields || 'schedule'::text;
        END IF;
        IF NEW.jexdate IS DISTINCT FROM OLD.jexdate THEN fields := fields || 'date'::text; END IF;
        IF NEW.jextime IS DISTINCT FROM OLD.jextime THEN fields := fields || 'time'::text; END IF;
        IF cardinality(fields) = 0 THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT s.jscjobid INTO job FROM pgagent.pga_schedule s WHERE s.jscid = row_now.jexscid;
    IF job IS NULL THEN
        RETURN NULL;  -- its schedule is being deleted: that deletion is logged
    END IF;
    PERFORM pyagent.log_change(job, 'exception', row_now.jexid,
                               pg_catalog.concat_ws(' ', row_now.jexdate, row_now.jextime),
                               CASE TG_OP WHEN 'INSERT' THEN 'create'
                                          WHEN 'DELETE' THEN 'delete' ELSE 'change' END,
                               fields, false);
    RETURN NULL;
END;
$fn$;

-- Nobody calls these directly (trigger functions cannot be called outside a trigger
-- anyway; firing a trigger checks no EXECUTE privilege).
REVOKE ALL ON FUNCTION pyagent.log_change(int4, text, int4, text, text, text[], bool, text),
    pyagent.record_job_change(), pyagent.record_step_change(),
    pyagent.record_schedule_change(), pyagent.record_exception_change()
    FROM PUBLIC;

-- The agent's own writes to pga_job (claim, release: jobagentid, jobnextrun, joblastrun)
-- name none of these columns, so the trigger does not even fire for them.
DROP TRIGGER IF EXISTS pyagent_authorship_job ON pgagent.pga_job;
CREATE TRIGGER pyagent_authorship_job
    AFTER INSERT OR DELETE
       OR UPDATE OF jobid, jobjclid, jobname, jobdesc, jobhostagent, jobenabled
    ON pgagent.pga_job
    FOR EACH ROW EXECUTE FUNCTION pyagent.record_job_change();
ALTER TABLE pgagent.pga_job ENABLE ALWAYS TRIGGER pyagent_authorship_job;

DROP TRIGGER IF EXISTS pyagent_authorship_step ON pgagent.pga_jobstep;
CREATE TRIGGER pyagent_authorship_step
    AFTER INSERT OR UPDATE OR DELETE ON pgagent.pga_jobstep
    FOR EACH ROW EXECUTE FUNCTION pyagent.record_step_change();
ALTER TABLE pgagent.pga_jobstep ENABLE ALWAYS TRIGGER pyagent_authorship_step;

DROP TRIGGER IF EXISTS pyagent_authorship_schedule ON pgagent.pga_schedule;
CREATE TRIGGER pyagent_authorship_schedule
    AFTER INSERT OR UPDATE OR DELETE ON pgagent.pga_schedule
    FOR EACH ROW EXECUTE FUNCTION pyagent.record_schedule_change();
ALTER TABLE pgagent.pga_schedule ENABLE ALWAYS TRIGGER pyagent_authorship_schedule;

DROP TRIGGER IF EXISTS pyagent_authorship_exception ON pgagent.pga_exception;
CREATE TRIGGER pyagent_authorship_exception
    AFTER INSERT OR UPDATE OR DELETE ON pgagent.pga_exception
    FOR EACH ROW EXECUTE FUNCTION pyagent.record_exception_change();
ALTER TABLE pgagent.pga_exception ENABLE ALWAYS TRIGGER pyagent_authorship_exception;
