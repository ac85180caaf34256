-- Optional pyagent extra (not part of pgAgent's schema): wake agents the moment a job may
-- have become due -- pgAdmin's "Run now" (jobnextrun = now()), a schedule change, a job
-- enabled, or a job released by another agent -- instead of waiting for the next poll.
-- Agents that do not LISTEN (the C pgAgent) are unaffected; pyagent works without it.

CREATE FUNCTION pgagent.pyagent_notify_job() RETURNS trigger
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

CREATE TRIGGER pyagent_notify_trigger AFTER INSERT OR UPDATE ON pgagent.pga_job
    FOR EACH ROW EXECUTE PROCEDURE pgagent.pyagent_notify_job();
