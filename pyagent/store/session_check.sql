-- The session check (pyagent.store.session_check): is a connection a server session of
-- its own? No statement here touches the pgagent schema; the mark is a custom setting
-- that lives only in the session that sets it (or in a pooled server backend).

-- name: mark_session
-- The first transaction: which backend serves it (its pid and its server's start, so a
-- pid of another server is never taken for the same backend), and a mark left in it.
SELECT pg_catalog.pg_backend_pid(), pg_catalog.pg_postmaster_start_time(),
       pg_catalog.set_config('pyagent.session_check', %(mark)s, false)

-- name: read_session
-- A later transaction (or the witness's): which backend serves it, and the mark it holds.
SELECT pg_catalog.pg_backend_pid(), pg_catalog.pg_postmaster_start_time(),
       pg_catalog.current_setting('pyagent.session_check', true)
