"""Which statements count as writes: the SQL verb decides for textual SQL."""

import pytest

from pyramid_dbrouter.writes import sql_writes


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "  update t set x = 1",
        "DELETE FROM t",
        "-- a comment\nCREATE TABLE t (x int)",
        "/* why */ drop table t",
        "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone",
        "TRUNCATE t",
        "(insert into t values (1))",
    ],
)
def test_writes(sql):
    assert sql_writes(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  -- only a comment\n select * from t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SAVEPOINT sa_1",
        "SHOW max_prepared_transactions",
        "",
    ],
)
def test_reads_and_the_rest(sql):
    assert not sql_writes(sql)
