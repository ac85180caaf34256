-- Placeholder: replaced by the real next-run computation.
CREATE FUNCTION pgagent.pga_next_schedule(int4, timestamptz, timestamptz, bool[], bool[], bool[], bool[], bool[])
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RETURN date_trunc('minute', greatest(now() + interval '1 minute', $2));
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_next_schedule(int4, timestamptz, timestamptz, bool[], bool[], bool[], bool[], bool[])
    IS 'Calculates the next runtime for a given schedule';
