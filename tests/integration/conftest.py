"""Fixtures shared by the integration tests that drive pgAdmin's own SQL templates."""

from __future__ import annotations

import pytest

from tests.pgadmin_support import PGADMIN_VERSION, PgAdmin, PgAdminUnavailable, locate_pgadmin


@pytest.fixture(scope="session")
def pgadmin(tmp_path_factory: pytest.TempPathFactory) -> PgAdmin:
    """pgAdmin's templates (downloaded once into the cache), or a skip when unavailable."""
    try:
        root = locate_pgadmin(tmp_path_factory.mktemp("pgadmin-download"))
    except PgAdminUnavailable as exc:
        pytest.skip(f"pgAdmin {PGADMIN_VERSION} templates are not available: {exc}")
    return PgAdmin(root)


@pytest.fixture(params=["db", "ext_db"])
def target(request: pytest.FixtureRequest) -> object:
    """Our schema, then the real extension."""
    return request.getfixturevalue(request.param)
