"""The rows a batch reads: each part of a row (key, position, attempts, ages) under its own name."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from helpers import NOW, WITH_HEARTBEAT_AND_ATTEMPTS, Shape, Tasks, ago, settings_for
from reaper.database.table import open_table
from reaper.engine.rows import key_shape, rule_shape
from reaper.policy.matching import dated_by, datings
from reaper.policy.policies import standard_policies


def test_a_row_read_for_a_bounded_requeue_names_its_key_position_attempts_and_ages(
    make_tasks: Callable[..., Tasks], database_url: str
) -> None:
    tasks = make_tasks(Shape(columns=WITH_HEARTBEAT_AND_ATTEMPTS))
    settings = settings_for(database_url, tasks.shape, running_timeout_action="requeue", max_attempts=3)
    table = open_table(tasks.engine, settings)
    policy = standard_policies(settings)[0]
    rule = policy.default
    zombie = tasks.add("running", started_at=ago(hours=30), heartbeat_at=ago(minutes=20), attempts=2)
    shape = rule_shape(table, policy, rule, (table.columns["started_at"], table.id))
    with tasks.engine.connect() as conn:
        (row,) = shape.rows(conn.execute(select(*shape.columns)))
    assert (row.id, row.key, row.attempts) == (zombie, (zombie,), 2)
    assert row.position[1] == zombie and table.from_db(row.position[0], table.columns["started_at"]) == ago(hours=30)
    dating, moment = dated_by(table, datings(table, policy, rule, NOW), row.ages) or (None, None)
    assert dating is not None and (dating.role, moment) == ("heartbeat_at", ago(minutes=20))  # the beat dates it


def test_a_row_read_for_a_delete_holds_its_key_and_position_alone(tasks: Tasks, database_url: str) -> None:
    settings = settings_for(database_url)
    table = open_table(tasks.engine, settings)
    policy = standard_policies(settings)[3]
    old = tasks.add("success", finished_at=ago(days=40))
    shape = rule_shape(table, policy, policy.default, (table.id,), with_age=False)
    assert shape.columns == [table.id, table.id]  # the index alone answers the read
    with tasks.engine.connect() as conn:
        (row,) = shape.rows(conn.execute(select(*shape.columns)))
    assert (row.id, row.key, row.position, row.attempts, row.ages) == (old, (old,), (old,), None, ())


def test_a_read_of_keys_names_the_id_first_of_the_key(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    first, second = tasks.add("success"), tasks.add("success")
    shape = key_shape(table)
    with tasks.engine.connect() as conn:
        rows = shape.rows(conn.execute(select(*shape.columns).order_by(table.id)))
    assert [row.id for row in rows] == [first, second] and [row.key for row in rows] == [(first,), (second,)]
