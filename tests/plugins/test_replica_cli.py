"""``dbrouter show`` with dbrouter_replica: the groups, and where reads go."""

from replica_app import sqlite_settings

from pyramid_dbrouter.cli import main


def test_show_marks_the_groups_and_explains_reads(tmp_path, capsys):
    settings = sqlite_settings(tmp_path, ("replica1", "replica2"))
    lines = ["[app:main]", "use = call:replica_app:main"]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    path = tmp_path / "app.ini"
    path.write_text("\n".join(lines) + "\n")
    assert main(["show", str(path), "--explain", "replica_app:Note"]) == 0
    out = capsys.readouterr().out
    engines = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert engines["default"].endswith("primary of replica1, replica2")
    assert engines["replica1"].endswith("replica of default")
    assert "dbrouter_replica" in out
    reads = next(line for line in out.splitlines() if line.strip().startswith("reads"))
    assert "replica1" in reads and "router dbrouter_replica" in reads
