-- Fragments used by more than one of the store's SQL files (pyagent.store.sqlfile makes
-- them available to every file): each rule is written once.

-- fragment: agent_sightings
-- Every other agent's row as pyagent.liveness.judge reads it: when it last renewed its
-- lease (jaglogintime) and how long ago by the server's clock, whether a backend has its
-- pid, the pyagent advert (lease terms) that backend holds, and whether that backend
-- started after the row was last written (pgAgent's pid-reuse test). backend_start is NULL
-- for other roles' sessions without pg_read_all_stats: then the pid alone counts.
SELECT 'agent' AS kind, a.jagpid::int8 AS id, a.jaglogintime AS ts,
       EXTRACT(EPOCH FROM (now() - a.jaglogintime))::float8 AS seconds,
       adv.objid::int8 AS num, s.pid IS NOT NULL AS flag,
       COALESCE(s.backend_start > a.jaglogintime, false) AS flag2, a.jagstation AS label
  FROM pgagent.pga_jobagent a
  LEFT JOIN pg_catalog.pg_stat_activity s ON s.pid = a.jagpid
  LEFT JOIN pg_catalog.pg_locks adv
         ON adv.pid = a.jagpid AND adv.locktype = 'advisory' AND adv.granted
        AND adv.classid = %(advert_class)s::oid AND adv.objsubid = 2
 WHERE a.jagpid <> ALL(%(own_pids)s)
