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


def test_plain_lines_between_log_points_keep_the_last_losses():
    buf = io.StringIO()
    with RichProgress(Console(file=buf, width=100, force_terminal=False)) as p:
        p.start("generator", 20)
        for i in range(1, 21):
            p.update("generator", i, {"rec": 0.125} if i % 3 == 0 else None)  # losses only every 3rd step
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("generator 2/20")
    assert "rec" not in lines[0]  # nothing logged yet at step 2
    assert all("rec 0.125" in ln for ln in lines[1:])  # steps 4, 8, 10, ...: the losses of the last log point
