-- pyagent's implementation of the pgagent schema, version 4 (as used by pgAgent 4.2).
--
-- Written for pyagent from the documented structure of the schema: same schema name,
-- tables, columns, types, defaults, constraints, sequences, indexes, seed rows,
-- functions and triggers, so that pgAdmin, the C pgAgent and pyagent can all use it.
-- The schema itself is created by the installer (pyagent schema install), which runs
-- this file and sql/pga_next_schedule.sql in one transaction.

COMMENT ON SCHEMA pgagent IS 'pgAgent system tables';

-- Agents currently connected. jagpid is the backend pid of the agent's service session.
CREATE TABLE pgagent.pga_jobagent (
    jagpid       int4        NOT NULL PRIMARY KEY,
    jaglogintime timestamptz NOT NULL DEFAULT current_timestamp,
    jagstation   text        NOT NULL
) WITHOUT OIDS;
COMMENT ON TABLE pgagent.pga_jobagent IS 'Active job agents';

CREATE TABLE pgagent.pga_jobclass (
    jclid   serial NOT NULL PRIMARY KEY,
    jclname text   NOT NULL
) WITHOUT OIDS;
CREATE UNIQUE INDEX pga_jobclass_name ON pgagent.pga_jobclass (jclname);
COMMENT ON TABLE pgagent.pga_jobclass IS 'Job classification';

-- pgAdmin's job dialog defaults to class 1, so these rows must exist with ids 1-5.
INSERT INTO pgagent.pga_jobclass (jclname) VALUES
    ('Routine Maintenance'),
    ('Data Import'),
    ('Data Export'),
    ('Data Summarisation'),
    ('Miscellaneous');

CREATE TABLE pgagent.pga_job (
    jobid        serial      NOT NULL PRIMARY KEY,
    jobjclid     int4        NOT NULL
        REFERENCES pgagent.pga_jobclass (jclid) ON DELETE RESTRICT ON UPDATE RESTRICT,
    jobname      text        NOT NULL,
    jobdesc      text        NOT NULL DEFAULT '',
    jobhostagent text        NOT NULL DEFAULT '',
    jobenabled   bool        NOT NULL DEFAULT true,
    jobcreated   timestamptz NOT NULL DEFAULT current_timestamp,
    jobchanged   timestamptz NOT NULL DEFAULT current_timestamp,
    jobagentid   int4        NULL
        REFERENCES pgagent.pga_jobagent (jagpid) ON DELETE SET NULL ON UPDATE RESTRICT,
    jobnextrun   timestamptz NULL,
    joblastrun   timestamptz NULL
) WITHOUT OIDS;
COMMENT ON TABLE pgagent.pga_job IS 'Job main entry';
COMMENT ON COLUMN pgagent.pga_job.jobagentid IS 'Agent that currently executes this job.';

CREATE TABLE pgagent.pga_jobstep (
    jstid      serial  NOT NULL PRIMARY KEY,
    jstjobid   int4    NOT NULL
        REFERENCES pgagent.pga_job (jobid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jstname    text    NOT NULL,
    jstdesc    text    NOT NULL DEFAULT '',
    jstenabled bool    NOT NULL DEFAULT true,
    jstkind    char(1) NOT NULL CHECK (jstkind IN ('b', 's')),
    jstcode    text    NOT NULL,
    -- An SQL step names a database on this server, a full connection string, or both;
    -- a batch step names neither.
    jstconnstr text    NOT NULL DEFAULT ''
        CHECK ((jstconnstr != '' AND jstkind = 's')
            OR (jstconnstr = '' AND (jstkind = 'b' OR jstdbname != ''))),
    jstdbname  name    NOT NULL DEFAULT ''
        CHECK ((jstdbname != '' AND jstkind = 's')
            OR (jstdbname = '' AND (jstkind = 'b' OR jstconnstr != ''))),
    jstonerror char(1) NOT NULL DEFAULT 'f' CHECK (jstonerror IN ('f', 's', 'i')),
    -- Never used by any agent; pgAdmin selects it.
    jscnextrun timestamptz NULL
) WITHOUT OIDS;
CREATE INDEX pga_jobstep_jobid ON pgagent.pga_jobstep (jstjobid);
COMMENT ON TABLE pgagent.pga_jobstep IS 'Job step to be executed';
COMMENT ON COLUMN pgagent.pga_jobstep.jstkind IS 'Kind of jobstep: s=sql, b=batch';
COMMENT ON COLUMN pgagent.pga_jobstep.jstonerror IS
    'What to do if step returns an error: f=fail the job, s=mark step as succeeded and continue, i=mark as fail but ignore it and proceed';

-- Schedule arrays are 1-based: minutes[1] is minute 0, hours[1] is hour 0,
-- weekdays[1] is Sunday, monthdays[32] is "last day of the month", months[1] is January.
-- An all-false array means "any value" for that field.
CREATE TABLE pgagent.pga_schedule (
    jscid        serial      NOT NULL PRIMARY KEY,
    jscjobid     int4        NOT NULL
        REFERENCES pgagent.pga_job (jobid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jscname      text        NOT NULL,
    jscdesc      text        NOT NULL DEFAULT '',
    jscenabled   bool        NOT NULL DEFAULT true,
    jscstart     timestamptz NOT NULL DEFAULT current_timestamp,
    jscend       timestamptz NULL,
    jscminutes   bool[60]    NOT NULL DEFAULT '{f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f}',
    jschours     bool[24]    NOT NULL DEFAULT '{f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f}',
    jscweekdays  bool[7]     NOT NULL DEFAULT '{f,f,f,f,f,f,f}',
    jscmonthdays bool[32]    NOT NULL DEFAULT '{f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f,f}',
    jscmonths    bool[12]    NOT NULL DEFAULT '{f,f,f,f,f,f,f,f,f,f,f,f}',
    CONSTRAINT pga_schedule_jscminutes_size   CHECK (array_upper(jscminutes, 1) = 60),
    CONSTRAINT pga_schedule_jschours_size     CHECK (array_upper(jschours, 1) = 24),
    CONSTRAINT pga_schedule_jscweekdays_size  CHECK (array_upper(jscweekdays, 1) = 7),
    CONSTRAINT pga_schedule_jscmonthdays_size CHECK (array_upper(jscmonthdays, 1) = 32),
    CONSTRAINT pga_schedule_jscmonths_size    CHECK (array_upper(jscmonths, 1) = 12)
) WITHOUT OIDS;
CREATE INDEX pga_jobschedule_jobid ON pgagent.pga_schedule (jscjobid);
COMMENT ON TABLE pgagent.pga_schedule IS 'Schedule for a job';

-- A NULL date means "every day", a NULL time means "the whole day".
CREATE TABLE pgagent.pga_exception (
    jexid   serial NOT NULL PRIMARY KEY,
    jexscid int4   NOT NULL
        REFERENCES pgagent.pga_schedule (jscid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jexdate date   NULL,
    jextime time   NULL
) WITHOUT OIDS;
CREATE INDEX pga_exception_jexscid ON pgagent.pga_exception (jexscid);
-- Kept global (not per schedule) for fidelity with pgAgent's schema.
CREATE UNIQUE INDEX pga_exception_datetime ON pgagent.pga_exception (jexdate, jextime);
COMMENT ON TABLE pgagent.pga_exception IS 'Job schedule exceptions';

CREATE TABLE pgagent.pga_joblog (
    jlgid       serial      NOT NULL PRIMARY KEY,
    jlgjobid    int4        NOT NULL
        REFERENCES pgagent.pga_job (jobid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jlgstatus   char(1)     NOT NULL DEFAULT 'r'
        CHECK (jlgstatus IN ('r', 's', 'f', 'i', 'd')),
    jlgstart    timestamptz NOT NULL DEFAULT current_timestamp,
    jlgduration interval    NULL
) WITHOUT OIDS;
CREATE INDEX pga_joblog_jobid ON pgagent.pga_joblog (jlgjobid);
COMMENT ON TABLE pgagent.pga_joblog IS 'Job run logs.';
COMMENT ON COLUMN pgagent.pga_joblog.jlgstatus IS
    'Status of job: r=running, s=successfully finished, f=failed, i=no steps to execute, d=aborted';

CREATE TABLE pgagent.pga_jobsteplog (
    jslid       serial      NOT NULL PRIMARY KEY,
    jsljlgid    int4        NOT NULL
        REFERENCES pgagent.pga_joblog (jlgid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jsljstid    int4        NOT NULL
        REFERENCES pgagent.pga_jobstep (jstid) ON DELETE CASCADE ON UPDATE RESTRICT,
    jslstatus   char(1)     NOT NULL DEFAULT 'r'
        CHECK (jslstatus IN ('r', 's', 'i', 'f', 'd')),
    jslresult   int4        NULL,
    jslstart    timestamptz NOT NULL DEFAULT current_timestamp,
    jslduration interval    NULL,
    jsloutput   text
) WITHOUT OIDS;
-- The name says jslid but the index is on jsljlgid; the name is kept for fidelity.
CREATE INDEX pga_jobsteplog_jslid ON pgagent.pga_jobsteplog (jsljlgid);
COMMENT ON TABLE pgagent.pga_jobsteplog IS 'Job step run logs.';
COMMENT ON COLUMN pgagent.pga_jobsteplog.jslstatus IS
    'Status of job step: r=running, s=successfully finished,  f=failed stopping job, i=ignored failure, d=aborted';
COMMENT ON COLUMN pgagent.pga_jobsteplog.jslresult IS 'Return code of job step';


CREATE FUNCTION pgagent.pgagent_schema_version() RETURNS int2
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    -- Agents compare this with their major version (4).
    RETURN 4;
END;
$fn$;


CREATE FUNCTION pgagent.pga_is_leap_year(int2) RETURNS bool
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    RETURN ($1 % 4 = 0 AND $1 % 100 <> 0) OR $1 % 400 = 0;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_is_leap_year(int2) IS 'Returns TRUE if $1 is a leap year';


-- Setting jobnextrun to NULL asks for a recomputation from the job's enabled schedules;
-- a disabled job never has a next run.
CREATE FUNCTION pgagent.pga_job_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT NEW.jobenabled THEN
        NEW.jobnextrun := NULL;
    ELSIF NEW.jobnextrun IS NULL THEN
        SELECT min(pgagent.pga_next_schedule(s.jscid, s.jscstart, s.jscend, s.jscminutes,
                                             s.jschours, s.jscweekdays, s.jscmonthdays,
                                             s.jscmonths))
          INTO NEW.jobnextrun
          FROM pgagent.pga_schedule s
         WHERE s.jscenabled AND s.jscjobid = OLD.jobid;
    END IF;
    RETURN NEW;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_job_trigger() IS 'Update the job''s next run time.';
CREATE TRIGGER pga_job_trigger BEFORE UPDATE ON pgagent.pga_job
    FOR EACH ROW EXECUTE PROCEDURE pgagent.pga_job_trigger();
COMMENT ON TRIGGER pga_job_trigger ON pgagent.pga_job IS 'Update the job''s next run time.';


CREATE FUNCTION pgagent.pga_schedule_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE pgagent.pga_job SET jobnextrun = NULL
         WHERE jobenabled AND jobid = OLD.jscjobid;
        RETURN OLD;
    END IF;
    UPDATE pgagent.pga_job SET jobnextrun = NULL
     WHERE jobenabled AND jobid = NEW.jscjobid;
    IF TG_OP = 'UPDATE' AND OLD.jscjobid <> NEW.jscjobid THEN
        UPDATE pgagent.pga_job SET jobnextrun = NULL
         WHERE jobenabled AND jobid = OLD.jscjobid;
    END IF;
    RETURN NEW;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_schedule_trigger() IS
    'Update the job''s next run time whenever a schedule changes';
CREATE TRIGGER pga_schedule_trigger AFTER INSERT OR UPDATE OR DELETE ON pgagent.pga_schedule
    FOR EACH ROW EXECUTE PROCEDURE pgagent.pga_schedule_trigger();
COMMENT ON TRIGGER pga_schedule_trigger ON pgagent.pga_schedule IS
    'Update the job''s next run time whenever a schedule changes';


CREATE FUNCTION pgagent.pga_exception_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    exc pgagent.pga_exception;
BEGIN
    IF TG_OP = 'DELETE' THEN
        exc := OLD;
    ELSE
        exc := NEW;
    END IF;
    UPDATE pgagent.pga_job j SET jobnextrun = NULL
      FROM pgagent.pga_schedule s
     WHERE j.jobenabled AND j.jobid = s.jscjobid AND s.jscid = exc.jexscid;
    IF TG_OP = 'UPDATE' AND OLD.jexscid <> NEW.jexscid THEN
        UPDATE pgagent.pga_job j SET jobnextrun = NULL
          FROM pgagent.pga_schedule s
         WHERE j.jobenabled AND j.jobid = s.jscjobid AND s.jscid = OLD.jexscid;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_exception_trigger() IS
    'Update the job''s next run time whenever an exception changes';
CREATE TRIGGER pga_exception_trigger AFTER INSERT OR UPDATE OR DELETE ON pgagent.pga_exception
    FOR EACH ROW EXECUTE PROCEDURE pgagent.pga_exception_trigger();
COMMENT ON TRIGGER pga_exception_trigger ON pgagent.pga_exception IS
    'Update the job''s next run time whenever an exception changes';
