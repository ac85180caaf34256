-- pgagent.pga_next_schedule: the next run time of one schedule (pyagent's own implementation).
--
-- Arguments (positional): jscid, jscstart, jscend, minutes bool[60], hours bool[24],
-- weekdays bool[7] (1 = Sunday), monthdays bool[32] (32 = last day of the month), months bool[12].
--
-- Result: the earliest instant t, on a whole minute, such that
--   * t >= greatest(date_trunc('minute', now()) + 1 minute, date_trunc('minute', jscstart));
--   * the wall-clock reading of t in the session TimeZone matches every field; a field whose
--     array has no true element (or is NULL) matches any value; monthday slot 32 adds the last
--     day of each month to the enabled days (an OR, also when other days are enabled);
--   * no pga_exception row of the schedule excludes it: (date, time) excludes that local minute,
--     (date, NULL) the whole local day, (NULL, time) that local time on every day; times are
--     compared exactly, so an exception time with seconds never matches;
--   * t <= jscend when jscend is set, and t < the search horizon (below);
-- or NULL when there is none.
--
-- Daylight-saving time: matching is defined over instants. An instant matches when its local
-- wall-clock reading matches, so a local time inside a spring-forward gap never matches (the
-- run is skipped that day), and a local time that occurs twice at a fall-back matches at both
-- instants; the earliest one that is not before the lower bound is returned.
--
-- Search horizon: 146097 days (exactly 400 Gregorian years) after the lower bound, and never
-- beyond 9999-12-31 00:00 UTC. Every calendar pattern (month, day, weekday, leap years) repeats
-- within 400 years, so a schedule that matches no date in that window never will; such
-- schedules get NULL. Month/day combinations that cannot exist (Feb 30, {Apr, Jun} with day 31
-- only, ...) are detected before any search.
--
-- The search walks candidate days (enabled month, enabled day, enabled weekday, not excluded),
-- jumping over disabled months and weekdays, and on each day takes the first allowed minute
-- from a precomputed 1440-entry minute-of-day mask (hours x minutes minus time-only
-- exceptions), falling back to later minutes only when an exception or a DST gap excludes it.
-- Local time -> instant: the cast picks one instant (the later one when ambiguous, a shifted
-- one when the time does not exist); a round trip back to local time detects non-existent
-- times, and the other instant of an ambiguous time is found with the UTC offset in force a
-- day before or after. This assumes, as every tzdata zone in use does, that a zone changes
-- its offset at most once a day and by less than a day.
-- The function never raises for any argument values and uses no subtransactions.
CREATE FUNCTION pgagent.pga_next_schedule(int4, timestamptz, timestamptz, bool[], bool[], bool[], bool[], bool[])
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    p_jscid ALIAS FOR $1;
    p_start ALIAS FOR $2;
    p_end ALIAS FOR $3;
    -- normalised fields: fixed length, 1-based, no NULL elements; "any" becomes all true
    v_mins bool[];
    v_hrs bool[];
    v_wdays bool[];
    v_wdays2 bool[];   -- weekdays twice, for a cyclic search
    v_mdays bool[];    -- days 1..31
    v_mons bool[];
    v_last bool;       -- "last day of the month" enabled
    v_anyday bool;     -- no monthday restriction at all
    v_mask bool[];     -- minute of day m is allowed when v_mask[m + 1]
    v_comb bool[];     -- [f * 31 + d]: day d allowed in a month whose 1st has weekday f (0 = Sunday)
    v_f int;
    v_minday int;
    v_month_len int[] := ARRAY[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    -- exceptions, sorted: whole days, local minutes, minutes of day
    v_dexc date[];
    v_dtexc timestamp[];
    v_texc int[];
    v_dn int;
    v_dp int := 1;
    v_tn int;
    v_tp int := 1;
    v_e int;
    -- bounds
    v_lo timestamptz;
    v_hi timestamptz;
    v_lo_local timestamp;
    v_from timestamp;
    v_from_date date;
    v_from_minute int;
    v_mask_first int;
    v_mask_last int;
    v_hl int[];
    v_ml int[];
    v_mon1 int;
    v_back interval;
    v_stop date;
    -- scan state
    v_y int;
    v_mo int;
    v_dd int;
    v_nd int;
    v_ndays int;
    v_dow int;
    v_d date;
    v_m int;
    v_x timestamp;
    v_t timestamptz;
    v_u timestamptz;
    v_alt timestamptz;
    v_early timestamptz;
    v_late timestamptz;
    v_cand timestamptz;
    v_best timestamptz;
    v_first date;
    v_shift int;
BEGIN
    IF p_start IS NULL OR p_start = 'infinity'::timestamptz THEN
        RETURN NULL;
    END IF;

    -- lower bound: the next whole minute after now, or the schedule start if that is later
    v_lo := greatest(date_trunc('minute', now()) + interval '1 minute', date_trunc('minute', p_start));
    IF v_lo >= '9999-12-31 00:00:00+00'::timestamptz OR (p_end IS NOT NULL AND p_end < v_lo) THEN
        RETURN NULL;
    END IF;
    v_hi := least(v_lo + interval '146097 days', '9999-12-31 00:00:00+00'::timestamptz);

    -- normalise the arrays (NULL array, NULL elements, missing positions: false)
    v_mins := ARRAY(SELECT coalesce($4[i], false) FROM generate_series(1, 60) AS i);
    v_hrs := ARRAY(SELECT coalesce($5[i], false) FROM generate_series(1, 24) AS i);
    v_wdays := ARRAY(SELECT coalesce($6[i], false) FROM generate_series(1, 7) AS i);
    v_mdays := ARRAY(SELECT coalesce($7[i], false) FROM generate_series(1, 31) AS i);
    v_last := coalesce($7[32], false);
    v_mons := ARRAY(SELECT coalesce($8[i], false) FROM generate_series(1, 12) AS i);
    IF NOT (true = ANY(v_mins)) THEN
        v_mins := array_fill(true, ARRAY[60]);
    END IF;
    IF NOT (true = ANY(v_hrs)) THEN
        v_hrs := array_fill(true, ARRAY[24]);
    END IF;
    IF NOT (true = ANY(v_wdays)) THEN
        v_wdays := array_fill(true, ARRAY[7]);
    END IF;
    v_wdays2 := v_wdays || v_wdays;
    IF NOT (true = ANY(v_mons)) THEN
        v_mons := array_fill(true, ARRAY[12]);
    END IF;
    v_anyday := NOT v_last AND NOT (true = ANY(v_mdays));
    IF v_anyday THEN
        v_mdays := array_fill(true, ARRAY[31]);
    ELSIF NOT (false = ANY(v_wdays)) THEN
        NULL;  -- weekdays unrestricted: search the monthdays alone
    ELSE
        v_comb := ARRAY(SELECT v_mdays[d] AND v_wdays[(f + d - 1) % 7 + 1]
                          FROM generate_series(0, 6) AS f, generate_series(1, 31) AS d
                         ORDER BY f, d);
    END IF;

    -- static check: some enabled month must be long enough for some enabled day
    IF NOT v_last THEN
        v_minday := array_position(v_mdays, true);
        v_e := 0;
        FOR i IN 1..12 LOOP
            IF v_mons[i] AND v_minday <= v_month_len[i] + (i = 2)::int THEN
                v_e := 1;
                EXIT;
            END IF;
        END LOOP;
        IF v_e = 0 THEN
            RETURN NULL;
        END IF;
    END IF;

    -- exceptions of this schedule
    -- (dates outside the searchable range are left out: date + time could overflow)
    SELECT coalesce(array_agg(DISTINCT jexdate ORDER BY jexdate)
                        FILTER (WHERE jexdate BETWEEN date '1900-01-01' AND date '10001-01-01'
                                AND jextime IS NULL), '{}'),
           coalesce(array_agg(DISTINCT jexdate + jextime ORDER BY jexdate + jextime)
                        FILTER (WHERE jexdate BETWEEN date '1900-01-01' AND date '10001-01-01'
                                AND jextime < '24:00'::time), '{}'),
           coalesce(array_agg(DISTINCT (extract(hour FROM jextime) * 60 + extract(minute FROM jextime))::int)
                        FILTER (WHERE jexdate IS NULL AND jextime IS NOT NULL
                                AND jextime < '24:00'::time AND extract(second FROM jextime) = 0), '{}')
      INTO v_dexc, v_dtexc, v_texc
      FROM pgagent.pga_exception
     WHERE jexscid = p_jscid;
    v_dn := coalesce(array_length(v_dexc, 1), 0);
    v_tn := coalesce(array_length(v_dtexc, 1), 0);

    -- minute-of-day mask
    v_mask := '{}';
    FOR i IN 1..24 LOOP
        IF v_hrs[i] THEN
            v_mask := v_mask || v_mins;
        ELSE
            v_mask := v_mask || array_fill(false, ARRAY[60]);
        END IF;
    END LOOP;
    FOREACH v_e IN ARRAY v_texc LOOP
        v_mask[v_e + 1] := false;
    END LOOP;
    IF array_position(v_mask, true) IS NULL THEN
        RETURN NULL;
    END IF;

    -- Where the scan of local wall-clock times starts. Normally the local reading of the lower
    -- bound; when the clock falls back within the next 24 hours, local times up to the size of
    -- that step earlier can still occur after the lower bound, so start that much earlier
    -- (candidates are checked against the lower bound as instants anyway).
    v_lo_local := v_lo::timestamp;
    v_back := (v_lo::timestamp - timezone('UTC', v_lo))
            - ((v_lo + interval '24 hours')::timestamp - timezone('UTC', v_lo + interval '24 hours'));
    IF v_back > interval '0' THEN
        v_from := v_lo_local - v_back;
    ELSE
        v_from := v_lo_local;
    END IF;
    -- last local day worth looking at: the day of the horizon or of the end, plus one for safety
    v_stop := (least(v_hi, coalesce(p_end, v_hi)))::timestamp::date + 1;

    v_from_date := v_from::date;
    v_from_minute := (extract(hour FROM v_from) * 60 + extract(minute FROM v_from))::int;
    v_mask_first := array_position(v_mask, true) - 1;
    -- last allowed minute: last enabled hour and minute, then back over time-only exceptions
    v_hl := array_positions(v_hrs, true);
    v_ml := array_positions(v_mins, true);
    v_mask_last := (v_hl[cardinality(v_hl)] - 1) * 60 + v_ml[cardinality(v_ml)] - 1;
    WHILE NOT v_mask[v_mask_last + 1] LOOP
        v_mask_last := v_mask_last - 1;
    END LOOP;
    v_mon1 := array_position(v_mons, true);
    v_y := extract(year FROM v_from)::int;
    v_mo := extract(month FROM v_from)::int;
    v_dd := extract(day FROM v_from)::int;

    <<days>>
    LOOP
        -- find the next candidate day at or after (v_y, v_mo, v_dd)
        LOOP
            IF v_dd > 28 THEN
                v_ndays := v_month_len[v_mo]
                           + (v_mo = 2 AND v_y % 4 = 0 AND (v_y % 100 <> 0 OR v_y % 400 = 0))::int;
                IF v_dd > v_ndays THEN
                    v_mo := v_mo + 1;
                    v_dd := 1;
                    IF v_mo > 12 THEN
                        v_mo := 1;
                        v_y := v_y + 1;
                    END IF;
                END IF;
            END IF;
            IF NOT v_mons[v_mo] THEN
                v_nd := array_position(v_mons, true, v_mo + 1);
                IF v_nd IS NULL THEN
                    v_y := v_y + 1;
                    v_mo := v_mon1;
                ELSE
                    v_mo := v_nd;
                END IF;
                v_dd := 1;
                CONTINUE;
            END IF;
            IF v_y > 10000 THEN
                EXIT days;
            END IF;
            v_ndays := v_month_len[v_mo]
                       + (v_mo = 2 AND v_y % 4 = 0 AND (v_y % 100 <> 0 OR v_y % 400 = 0))::int;
            IF v_comb IS NULL THEN
                v_nd := array_position(v_mdays, true, v_dd);
                IF v_last AND (v_nd IS NULL OR v_nd > v_ndays) THEN
                    v_nd := v_ndays;
                END IF;
            ELSE
                -- monthdays and weekdays together: v_comb block of the weekday of the 1st
                v_f := ((make_date(v_y, v_mo, 1) - date '1970-01-04') % 7 + 7) % 7;
                v_nd := array_position(v_comb, true, v_f * 31 + v_dd) - v_f * 31;
                IF v_last AND (v_nd IS NULL OR v_nd > v_ndays)
                   AND v_wdays[(v_f + v_ndays - 1) % 7 + 1] THEN
                    v_nd := v_ndays;
                END IF;
            END IF;
            IF v_nd IS NULL OR v_nd > v_ndays THEN
                -- nothing left in this month: first day of the next enabled month
                v_mo := array_position(v_mons, true, v_mo + 1);
                IF v_mo IS NULL THEN
                    v_y := v_y + 1;
                    v_mo := v_mon1;
                END IF;
                v_dd := 1;
                CONTINUE;
            END IF;
            v_dd := v_nd;
            v_d := make_date(v_y, v_mo, v_dd);
            IF v_d > v_stop OR (v_first IS NOT NULL AND v_d > v_first + 1) THEN
                EXIT days;
            END IF;
            IF v_comb IS NULL THEN
                v_dow := ((v_d - date '1970-01-04') % 7 + 7) % 7;
                IF NOT v_wdays[v_dow + 1] THEN
                    -- jump to the next enabled weekday
                    v_dd := v_dd + array_position(v_wdays2, true, v_dow + 2) - (v_dow + 1);
                    CONTINUE;
                END IF;
            END IF;
            IF v_dp <= v_dn THEN
                WHILE v_dp <= v_dn AND v_dexc[v_dp] < v_d LOOP
                    v_dp := v_dp + 1;
                END LOOP;
                IF v_dp <= v_dn AND v_dexc[v_dp] = v_d THEN
                    v_dd := v_dd + 1;
                    CONTINUE;
                END IF;
            END IF;
            EXIT;
        END LOOP;

        -- allowed minutes of this day, in order
        IF v_d = v_from_date THEN
            v_m := array_position(v_mask, true, v_from_minute + 1) - 1;
        ELSE
            v_m := v_mask_first;
        END IF;
        WHILE v_m IS NOT NULL LOOP
            v_x := v_d + v_m * interval '1 minute';
            IF v_tp <= v_tn THEN
                WHILE v_tp <= v_tn AND v_dtexc[v_tp] < v_x LOOP
                    v_tp := v_tp + 1;
                END LOOP;
            END IF;
            IF v_tp > v_tn OR v_dtexc[v_tp] <> v_x THEN
                -- the instants whose local reading is v_x: none (gap), one, or two (fall-back)
                v_t := v_x::timestamptz;
                IF v_t::timestamp = v_x THEN
                    v_early := v_t;
                    v_late := v_t;
                    -- the other occurrence, if any, uses the UTC offset in force a day before or after
                    FOR v_shift IN -1..1 BY 2 LOOP
                        v_u := v_t + v_shift * interval '24 hours';
                        v_alt := timezone('UTC', v_x - (v_u::timestamp - timezone('UTC', v_u)));
                        IF v_alt <> v_t AND v_alt::timestamp = v_x THEN
                            v_early := least(v_early, v_alt);
                            v_late := greatest(v_late, v_alt);
                        END IF;
                    END LOOP;
                    IF v_late >= v_lo THEN
                        IF v_first IS NULL THEN
                            v_first := v_d;
                        END IF;
                        IF v_early >= v_lo THEN
                            v_cand := v_early;
                        ELSE
                            v_cand := v_late;
                        END IF;
                        IF v_cand < v_hi AND (p_end IS NULL OR v_cand <= p_end) THEN
                            v_best := least(v_best, v_cand);
                        END IF;
                        IF v_early >= v_lo THEN
                            -- every later local time occurs later still
                            EXIT days;
                        END IF;
                    END IF;
                END IF;
            END IF;
            IF v_m >= v_mask_last THEN
                EXIT;
            END IF;
            v_m := array_position(v_mask, true, v_m + 2) - 1;
        END LOOP;
        v_dd := v_dd + 1;
    END LOOP;
    RETURN v_best;
END;
$fn$;
COMMENT ON FUNCTION pgagent.pga_next_schedule(int4, timestamptz, timestamptz, bool[], bool[], bool[], bool[], bool[])
    IS 'Calculates the next runtime for a given schedule';
