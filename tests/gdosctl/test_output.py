"""Tables as text: aligned, numbers on the right, states coloured only when asked."""

from gdosctl import output
from gdosctl.output import Column

COLUMNS = [
    Column("name", "NAME"),
    Column("state", "STATE", output.state),
    Column("rss_bytes", "RSS", output.size, right=True),
]
ROWS = [
    {"name": "web-1", "state": "running", "rss_bytes": 2048},
    {"name": "worker-10", "state": None, "rss_bytes": None},
]


def test_a_table_aligns_its_columns_and_puts_numbers_right():
    assert output.table(ROWS, COLUMNS).splitlines() == [
        "NAME       STATE        RSS",
        "web-1      running  2.0 KiB",
        "worker-10  -              -",
    ]


def test_colour_only_when_asked_and_never_with_no_color(monkeypatch, capsys):
    coloured = output.table(ROWS, COLUMNS, colour=True)
    assert "\x1b[32mrunning\x1b[0m" in coloured and "\x1b[1mNAME" in coloured
    assert "[green]" not in coloured

    monkeypatch.setattr(output, "is_terminal", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    output.emit(ROWS, COLUMNS, "table")
    assert "\x1b[" not in capsys.readouterr().out
    monkeypatch.delenv("NO_COLOR")
    output.emit(ROWS, COLUMNS, "table")
    assert "\x1b[32m" in capsys.readouterr().out
