-- Optional pyagent extra: a job's own time zone, `@TIMEZONE=Europe/Berlin;` in its comment,
-- honoured whoever computes its next run (not part of pgAgent's schema; pgAdmin and the C
-- pgAgent ignore it, and pyagent's agent honours the annotation without it). Safe to run
-- again. pgAgent's own functions and triggers are not changed.
--
-- pgAgent's BEFORE UPDATE trigger pga_job_trigger computes a job's next run when something
-- sets jobnextrun to NULL: an agent releasing the job after a run, pgAgent's schedule and
-- exception triggers (after any INSERT/UPDATE/DELETE of a schedule or an exception, they
-- run UPDATE pga_job SET jobnextrun = NULL), enabling the job. It reads the schedules in the
-- TimeZone of the session that happens to do it. pyagent_timezone_trigger fires after it
-- on the same UPDATE (BEFORE triggers fire in name order: pga_... < pyagent_...) and, for a
-- job that names its own zone, replaces a next run computed in another zone with the one
-- the schedules give in the job's zone. It only changes the row being written (NEW), so it
-- never issues an UPDATE of its own: no trigger fires again because of it.


-- The raw value of the last `@TIMEZONE=...;` line of a job's comment, trimmed (NULL when
-- there is none). The grammar of pyagent.annotations: one annotation per line, the name in
-- any case, the `;` optional, spaces around the value ignored.
CREATE OR REPLACE FUNCTION pgagent.pyagent_timezone_annotation(p_jobdesc text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT btrim(r.m[1], E' \t\r')
      FROM regexp_matches(p_jobdesc, '^[ \t]*@TIMEZONE[ \t]*=([^;\n]*);?[ \t]*$', 'gin')
           WITH ORDINALITY AS r(m, n)
     ORDER BY r.n DESC
     LIMIT 1
$fn$;
COMMENT ON FUNCTION pgagent.pyagent_timezone_annotation(text) IS
    'pyagent: the @TIMEZONE=...; value of a job comment, or NULL';


-- Whether a name is a time zone of the tz database, spelled exactly as there: the rule of
-- pyagent.annotations.parse_timezone. Names the TimeZone setting accepts but that are not
-- zones of the database (POSIX rules such as UTC+3, offsets, `localtime`, the posix/ and
-- right/ copies) are refused, so the agent, `pyagent jobs` and this trigger agree.
CREATE OR REPLACE FUNCTION pgagent.pyagent_known_timezone(p_zone text)
RETURNS bool LANGUAGE plpgsql VOLATILE
SET TimeZone TO 'UTC'  -- whatever the test below sets is undone when the function returns
AS $fn$
BEGIN
    IF p_zone IS NULL
       OR p_zone !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$'
       OR p_zone IN ('localtime', 'posixrules')
       OR p_zone ~ '^(posix|right)/'
       -- Top-level names with digits are POSIX rules, except these zones of the database.
       OR (strpos(p_zone, '/') = 0 AND p_zone ~ '[0-9]'
           AND p_zone NOT IN ('EST5EDT', 'CST6CDT', 'MST7MDT', 'PST8PDT', 'GMT0', 'GMT+0',
                              'GMT-0')) THEN
        RETURN false;
    END IF;
    BEGIN
        PERFORM pg_catalog.set_config('TimeZone', p_zone, true);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN false;
    END;
    -- The setting finds names in any case and reports the database's spelling.
    RETURN pg_catalog.current_setting('TimeZone') = p_zone;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pyagent_known_timezone(text) IS
    'pyagent: true when the name is a time zone of the tz database, spelled as there';


-- The job's next run as pga_job_trigger computes it, with the schedules read in p_zone
-- (the schema's own pga_next_schedule, so pgAgent's rules apply, DST included).
CREATE OR REPLACE FUNCTION pgagent.pyagent_next_run_in(p_jobid int4, p_zone text)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE
SET TimeZone TO 'UTC'  -- the caller's TimeZone is back when the function returns
AS $fn$
DECLARE
    v_next timestamptz;
BEGIN
    PERFORM pg_catalog.set_config('TimeZone', p_zone, true);
    SELECT min(pgagent.pga_next_schedule(s.jscid, s.jscstart, s.jscend, s.jscminutes,
                                         s.jschours, s.jscweekdays, s.jscmonthdays,
                                         s.jscmonths))
      INTO v_next
      FROM pgagent.pga_schedule s
     WHERE s.jscenabled AND s.jscjobid = p_jobid;
    RETURN v_next;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pyagent_next_run_in(int4, text) IS
    'pyagent: a job''s next run with its schedules read in the given time zone';


CREATE OR REPLACE FUNCTION pgagent.pyagent_timezone_job() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    v_text text := pgagent.pyagent_timezone_annotation(NEW.jobdesc);
    v_session text := pg_catalog.current_setting('TimeZone');
    v_same_desc bool := OLD.jobdesc IS NOT DISTINCT FROM NEW.jobdesc;
    v_zone text;
    v_old_zone text;
BEGIN
    -- An agent that honours the annotation releases the job with its session set to the
    -- job's zone: pga_job_trigger computed in the right zone already. A due time (a
    -- claim, "Run now") is never pga_job_trigger's: the schedules always give a later
    -- minute than now.
    IF v_same_desc AND (v_text IS NOT DISTINCT FROM v_session
                        OR (NEW.jobnextrun IS NOT NULL AND NEW.jobnextrun <= now())) THEN
        RETURN NEW;
    END IF;
    IF pgagent.pyagent_known_timezone(v_text) THEN
        v_zone := v_text;
    ELSIF v_text IS NOT NULL AND (NOT v_same_desc OR OLD.jobnextrun IS NULL) THEN
        -- Said when the comment changes or the job gets its first next run (created,
        -- enabled), not at every release.
        -- The value is the editor's text: control characters are shown as '?', and it is
        -- cut, so the line stays one readable line.
        RAISE WARNING 'pyagent: job %: @TIMEZONE=%; is not a known time zone name (examples: Europe/Berlin, UTC): its next run is computed in the session''s TimeZone (%), as pgAgent does',
            NEW.jobid, left(regexp_replace(v_text, '[[:cntrl:]]', '?', 'g'), 64), v_session;
    END IF;
    IF v_same_desc THEN
        v_old_zone := v_zone;
    ELSE
        v_old_zone := pgagent.pyagent_timezone_annotation(OLD.jobdesc);
        IF NOT pgagent.pyagent_known_timezone(v_old_zone) THEN
            v_old_zone := NULL;
        END IF;
    END IF;
    IF v_zone IS NOT DISTINCT FROM v_old_zone
       AND (v_zone IS NULL OR v_zone = v_session
            OR (NEW.jobnextrun IS NOT NULL AND NEW.jobnextrun <= now())) THEN
        RETURN NEW;
    END IF;
    BEGIN
        IF v_zone IS DISTINCT FROM v_old_zone THEN
            -- The job's zone was added, changed or removed: its next run follows, unless
            -- the job is due (its run goes ahead, and its release computes the next one).
            IF NEW.jobnextrun IS NULL OR NEW.jobnextrun > now() THEN
                NEW.jobnextrun := pgagent.pyagent_next_run_in(OLD.jobid,
                                                              COALESCE(v_zone, v_session));
            END IF;
        -- pga_job_trigger's result is what the schedules give in this session's zone:
        -- replace it. Any other value (a retry, a time set by hand) is kept.
        ELSIF NEW.jobnextrun IS NOT DISTINCT FROM pgagent.pyagent_next_run_in(OLD.jobid,
                                                                              v_session) THEN
            NEW.jobnextrun := pgagent.pyagent_next_run_in(OLD.jobid, v_zone);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the edit or the release: the job keeps what pgAgent's trigger gave.
        RAISE WARNING 'pyagent: job %: could not compute its next run in time zone %: %',
            NEW.jobid, COALESCE(v_zone, v_session), SQLERRM;
    END;
    RETURN NEW;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pyagent_timezone_job() IS
    'pyagent: a job with @TIMEZONE=...; gets its next run computed in that zone';

DROP TRIGGER IF EXISTS pyagent_timezone_trigger ON pgagent.pga_job;
-- The WHEN clause keeps jobs without the annotation out of it entirely.
CREATE TRIGGER pyagent_timezone_trigger BEFORE UPDATE ON pgagent.pga_job
    FOR EACH ROW
    WHEN (NEW.jobenabled AND (NEW.jobdesc ILIKE '%@timezone%' OR OLD.jobdesc ILIKE '%@timezone%'))
    EXECUTE PROCEDURE pgagent.pyagent_timezone_job();
COMMENT ON TRIGGER pyagent_timezone_trigger ON pgagent.pga_job IS
    'pyagent: a job with @TIMEZONE=...; gets its next run computed in that zone';
