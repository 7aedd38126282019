"""The database boundary: how a URL is shown in messages."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from reaper.db import safe_url, url_secrets


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql+pymysql://app:s3cret@db:3306/tasks", "mysql+pymysql://app:***@db:3306/tasks"),
        ("postgresql+psycopg://app@db/tasks?password=s3cret", "postgresql+psycopg://app@db/tasks?password=***"),
        ("mysql+pymysql://app@db/tasks?passwd=s3cret&charset=utf8mb4",
         "mysql+pymysql://app@db/tasks?charset=utf8mb4&passwd=***"),
        ("postgresql+psycopg://app@db/tasks?sslpassword=s3cret", "postgresql+psycopg://app@db/tasks?sslpassword=***"),
        ("sqlite:///tasks.db", "sqlite:///tasks.db"),
    ],
)
def test_a_url_is_shown_with_every_password_masked(url: str, expected: str) -> None:
    assert safe_url(url) == expected
    assert safe_url(make_url(url)) == expected
    assert all(secret == "s3cret" for secret in url_secrets(make_url(url)))


def test_a_url_that_cannot_be_parsed_is_not_shown_at_all() -> None:
    shown = safe_url("not a url, s3cret")
    assert "s3cret" not in shown and "not shown" in shown
