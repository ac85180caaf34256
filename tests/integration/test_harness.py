"""The harness itself: each test gets its own database with the schema installed."""

from __future__ import annotations


def test_fresh_database_has_schema_and_seed_rows(conn):
    rows = conn.execute("SELECT jclid, jclname FROM pgagent.pga_jobclass ORDER BY jclid").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0][1] == "Routine Maintenance"
    assert conn.execute("SELECT pgagent.pgagent_schema_version()").fetchone() == (4,)


def test_databases_are_isolated(db, conn):
    conn.execute("INSERT INTO pgagent.pga_job (jobjclid, jobname) VALUES (1, 'only here')")
    assert conn.execute("SELECT count(*) FROM pgagent.pga_job").fetchone() == (1,)


def test_extension_template_is_the_real_extension(ext_db):
    with ext_db.connect() as c:
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname='pgagent'").fetchone() == ("4.2",)
