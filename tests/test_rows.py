"""The rows a batch reads: each part of a row (key, position) under its own name."""

from __future__ import annotations

from sqlalchemy import select

from helpers import Tasks, ago, settings_for
from reaper.database.table import open_table
from reaper.engine.rows import key_shape, position_shape


def test_a_row_read_along_an_index_holds_its_key_and_position_alone(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    old = tasks.add("success", finished_at=ago(days=40))
    shape = position_shape(table, (table.columns["finished_at"], table.id))
    assert shape.columns == [table.id, table.columns["finished_at"], table.id]  # the index alone answers the read
    with tasks.engine.connect() as conn:
        (row,) = shape.rows(conn.execute(select(*shape.columns)))
    assert (row.id, row.key, row.position[1]) == (old, (old,), old)
    assert table.from_db(row.position[0], table.columns["finished_at"]) == ago(days=40)


def test_a_read_of_keys_names_the_id_first_of_the_key(tasks: Tasks, database_url: str) -> None:
    table = open_table(tasks.engine, settings_for(database_url))
    first, second = tasks.add("success"), tasks.add("success")
    shape = key_shape(table)
    with tasks.engine.connect() as conn:
        rows = shape.rows(conn.execute(select(*shape.columns).order_by(table.id)))
    assert [row.id for row in rows] == [first, second] and [row.key for row in rows] == [(first,), (second,)]
