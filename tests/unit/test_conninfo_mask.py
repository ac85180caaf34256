"""Masking passwords in connection strings for display: nothing secret left, the rest as
written where that can be done safely."""

from __future__ import annotations

import pytest

from pyagent.conninfo import mask_conninfo, parse


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("host=a password=x user=b", "host=a password=***** user=b"),
        ("host=a password='a b\\' c' user=b", "host=a password=***** user=b"),
        ("host=a sslpassword=qqq9 password=www9", "host=a sslpassword=***** password=*****"),
        ("postgresql://u:p%40@h/db?sslmode=require", "postgresql://u:*****@h/db?sslmode=require"),
        ("host=a user=b", "host=a user=b"),
        # a password in a URI's query: rebuilt as keywords rather than risk a partial mask
        (
            "postgresql://u@h/db?password=zz&sslmode=require",
            "user=u password=***** dbname=db host=h sslmode=require",
        ),
    ],
)
def test_mask_conninfo(conninfo: str, shown: str) -> None:
    masked = mask_conninfo(conninfo)
    assert masked == shown
    secret = {k: v for k, v in parse(conninfo).items() if k in ("password", "sslpassword")}
    assert all(value not in masked for value in secret.values() if value not in ("*****",))
