import io

from rich.console import Console

from cli.progress import RichProgress


def _run(terminal: bool) -> str:
    buf = io.StringIO()
    with RichProgress(Console(file=buf, width=100, force_terminal=terminal)) as p:
        p.start("classifier", 1000)
        for i in range(50, 1001, 50):
            p.update("classifier", i, {"loss": 0.5, "generated": 0.25})
        p.end("classifier")
    return buf.getvalue()


def test_plain_lines_off_terminal_one_per_tenth():
    lines = _run(False).splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("classifier 100/1000 (10%)") and lines[-1].startswith("classifier 1000/1000 (100%)")
    assert "eta" in lines[0] and "loss 0.5" in lines[0] and "gen 0.25" in lines[0]


def test_live_bar_on_terminal_shows_losses():
    out = _run(True)
    assert "1000/1000" in out and "loss 0.5" in out and "eta" in out
