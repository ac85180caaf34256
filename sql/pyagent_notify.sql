-- Optional pyagent extras (not part of pgAgent's schema; pgAdmin and the C pgAgent ignore
-- them, and pyagent works without them). Safe to run again.
--
-- 1. Wake agents the moment a job may have become due -- pgAdmin's "Run now"
--    (jobnextrun = now()), a schedule change, a job enabled, or a job released by another
--    agent -- instead of waiting for the next poll.
-- 2. An index on due, unclaimed jobs, so claiming stays cheap with thousands of jobs due.

CREATE OR REPLACE FUNCTION pgagent.pyagent_notify_job() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.jobenabled AND NEW.jobagentid IS NULL AND NEW.jobnextrun IS NOT NULL
       AND (TG_OP = 'INSERT'
            OR NEW.jobnextrun IS DISTINCT FROM OLD.jobnextrun
            OR OLD.jobagentid IS NOT NULL
            OR NOT OLD.jobenabled) THEN
        PERFORM pg_notify('pyagent_jobs', '');
    END IF;
    RETURN NULL;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pyagent_notify_job() IS
    'pyagent: notify agents (channel pyagent_jobs) when a job may have become due';

DROP TRIGGER IF EXISTS pyagent_notify_trigger ON pgagent.pga_job;
CREATE TRIGGER pyagent_notify_trigger AFTER INSERT OR UPDATE ON pgagent.pga_job
    FOR EACH ROW EXECUTE PROCEDURE pgagent.pyagent_notify_job();

CREATE INDEX IF NOT EXISTS pyagent_pga_job_due ON pgagent.pga_job (jobnextrun)
    WHERE jobenabled AND jobagentid IS NULL;
