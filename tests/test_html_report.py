"""<prefix>.html: a tiny real experiment's page, checked for its content and rendered in headless Chromium."""

import html
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from chimeramix.experiment import run_experiment
from chimeramix.html_report import MAX_ERRORS_PER_CLASS, report_html, write_html
from chimeramix.report import load_tables, write_tables
from chimeramix.runs import read_result
from chimeramix.data.sources import open_source

SEEDS = [0, 1]
# digits at 8 x 8 (the smallest --image-size): the page's content does not depend on the size, the test's time does
TINY = {"image_size": 8, "steps": 2, "batch_size": 4, "log_every": 1}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Baseline, MixUp and ChimeraMix (tiny generators) over two seeds, with the tables and the page written."""
    base = tmp_path_factory.mktemp("html")
    res = run_experiment("digits", 2, SEEDS, preset="fast", masks=["grid"], methods="none,mixup,chimeramix", device="cpu",
                         root=base / "ck", out=base / "out" / "exp",
                         gen_options={**TINY, "ngf": 4, "ndf": 4}, clf_options=TINY)
    return base, res


def _ascii(text: str) -> str:
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _page(res) -> str:
    return res.table_html.read_text(encoding="ascii")  # non-ASCII is written as character references


def test_classifier_results_record_each_test_images_prediction(experiment):
    _, res = experiment
    test = open_source("digits", image_size=8).load("test")
    for r in res.results:
        rec = read_result(r["run_dir"])
        preds = rec["test_predictions"]
        assert len(preds) == rec["test_size"] == len(test) and rec["test_fingerprint"] == test.fingerprint
        right = sum(p == y for p, y in zip(preds, test.labels.tolist()))
        assert right / len(preds) == pytest.approx(rec["accuracy"])
        assert sum(row[c] for row in rec["confusion"] for c in range(len(row))) == len(preds)
        # run.json keeps the summary, not the per-image list
        run = json.loads((Path(r["run_dir"]) / "run.json").read_text())
        assert "test_predictions" not in run["result"] and run["result"]["accuracy"] == rec["accuracy"]


def test_page_holds_the_tables_pictures_and_errors(experiment):
    _, res = experiment
    text = _page(res)
    page = html.unescape(text)
    assert text.isascii() and res.table_html == res.table_md.with_suffix(".html")
    for cell in _markdown_cells(res.table_md):
        assert f"<td>{_ascii(html.escape(cell))}</td>" in text, cell
    assert [r.method for r in res.rows] == ["Baseline", "MixUp", "ChimeraMix+Grid"]
    # everything inline: no reference to a file or a server, and every picture a PNG data URI
    srcs = [s.split('"', 1)[0] for s in text.split(' src="')[1:]]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    # the chart, a sample grid per generator run, a confusion matrix per classifier run
    assert text.count('alt="accuracy per method"') == 1
    assert text.count('alt="generator sample grid"') == len(res.generator_runs) == len(SEEDS)
    assert text.count('alt="confusion matrix of ') == len(res.results) == 3 * len(SEEDS)
    # per-class accuracy: a row per class, each method's mean over seeds of its recorded recall
    for c in range(10):
        recs = [[read_result(d)["per_class"][c] for d in row.run_dirs] for row in res.rows]
        means = [f"{100 * sum(r['recall'] for r in rs) / len(rs):.1f}" for rs in recs]
        assert f"<tr><td>{c}</td><td>{recs[0][0]['support']}</td>" + "".join(f"<td>{m}</td>" for m in means) + "</tr>" in text
    # the Baseline's errors: per class a heading with the count, at most MAX_ERRORS_PER_CLASS thumbnails
    test = open_source("digits", image_size=8).load("test")
    base = [read_result(d)["test_predictions"] for d in res.rows[0].run_dirs]
    labels = test.labels.tolist()
    for c in range(10):
        wrong = [i for i, y in enumerate(labels) if y == c and any(p[i] != y for p in base)]
        assert f"{c}: the Baseline gets {len(wrong)} of {labels.count(c)} test images wrong in at least one seed" in page
        # most often wrong first, then in test-set order
        shown = sorted(wrong, key=lambda i: (-sum(p[i] != labels[i] for p in base), i))[:MAX_ERRORS_PER_CLASS]
        for i in shown:
            assert f'alt="test image {i}"' in text
    thumbs = text.count('class="thumb"')
    assert 0 < thumbs <= 10 * MAX_ERRORS_PER_CLASS


def test_results_without_predictions_leave_the_section_out_saying_why(experiment, tmp_path):
    base, res = experiment
    copies = []
    for r in res.results:  # older runs: result.json without per-image predictions
        d = tmp_path / Path(r["run_dir"]).name
        shutil.copytree(r["run_dir"], d)
        rec = json.loads((d / "result.json").read_text())
        del rec["test_predictions"], rec["test_fingerprint"]
        (d / "result.json").write_text(json.dumps(rec))
        copies.append(d)
    tables = load_tables(copies)
    page = html.unescape(report_html(tables))
    assert "Left out: the Baseline runs' result.json files hold no per-image test predictions" in page
    assert "wrong in at least one seed" not in page and 'class="thumb"' not in page
    assert page.count("confusion matrix of ") == len(copies)  # the rest of the page is still there

    # a recorded table keeps accuracies only: table and chart, and a note instead of the runs' figures
    stem = tmp_path / "recorded"
    tables = load_tables([res.summary_json])
    _, _, charts = write_tables(tables, stem)
    page = html.unescape(write_html(tables, stem, "", charts).read_text())
    assert "keeps accuracies only" in page and "confusion matrix of " not in page and 'alt="accuracy per method"' in page


def test_report_command_writes_the_page(experiment, tmp_path):
    from typer.testing import CliRunner

    from cli.app import app

    _, res = experiment
    r = CliRunner().invoke(app, ["report", *[r["run_dir"] for r in res.results], "--out-prefix", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "rep.html").read_text()
    assert str(tmp_path / "rep.html") in r.stdout.replace("\n", "")
    assert page.count('alt="confusion matrix of ') == len(res.results)


# ---------------------------------------------------------------- in a real browser

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must render the page, not skip it (.ci/run installs it)")
    pytest.skip(reason)


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--mute-audio",
         "--window-size=1280,2000"]


def _run_chromium(browser: str, profile: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


class DevTools:
    """Chromium driven over --remote-debugging-pipe: NUL-terminated JSON messages, it reads fd 3 and writes fd 4.

    Why this and not stderr: with --enable-logging=stderr Chromium mixes console lines with its own noise (dbus and
    GPU errors on a headless machine) in a format that changes between versions; the DevTools protocol reports
    failed loads, console errors, exceptions and security (CSP) violations as typed events, the same on any
    version, and lets the test ask the page itself (are all images decoded? does anything overflow?).
    """

    def __init__(self, browser: str, profile: Path):
        import fcntl

        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # above 9, so placing them at 3 and 4 in the child cannot overwrite one with the other
        self.child = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_r, from_w)]
        for fd in (to_r, from_w):
            os.close(fd)
        self.out, self.inp = to_w, from_r

        def place():  # runs in the child between fork and exec
            os.dup2(self.child[0], 3)
            os.dup2(self.child[1], 4)

        self.proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=place, close_fds=False)
        for fd in self.child:
            os.close(fd)
        self.buf, self.events, self.next_id, self.session = b"", [], 0, None

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, "Chromium stopped answering"
            ready, _, _ = select.select([self.inp], [], [], left)
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                assert chunk, "Chromium closed its DevTools pipe"
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                assert "error" not in m, m
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._read(deadline))

    def open(self, url: str, width: int = 1280, height: int = 900, media: str = "screen") -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.call("Emulation.setEmulatedMedia", {"media": media})
        self.events.clear()  # what about:blank did is not the page's
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Everything that went wrong while the page loaded, one line each."""
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"}
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.loadingFailed":
                out.append(f"failed load {urls.get(p['requestId'], '?')[:120]}: {p.get('errorText')}")
            elif m == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
                out.append(f"HTTP {p['response']['status']} for {p['response']['url'][:120]}")
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log ({p['entry'].get('source')}): {p['entry']['text'][:200]}")
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])[:200])
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}"[:200])
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.out)
        os.close(self.inp)


CHECKS = """({
  images: document.images.length,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  text: document.body.innerText,
})"""


def _load(browser: str, profile: Path, url: str, **view) -> tuple[list[str], dict]:
    dt = DevTools(browser, profile)
    try:
        dt.open(url, **view)
        checks = dt.evaluate(CHECKS)
        time.sleep(0.2)  # a console message sent during load may arrive just after the load event
        dt.evaluate("1")
        return dt.problems(), checks
    finally:
        dt.close()


def test_the_error_check_sees_a_broken_page(tmp_path):
    """The control for the test below: a page with a missing picture, a console error and an exception fails it."""
    browser = _chromium()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>broken</p><img src="missing.png" alt="gone">'
                   '<script>console.error("boom"); undefinedFunction();</script></body></html>')
    problems, checks = _load(browser, tmp_path / "profile", bad.as_uri())
    text = "\n".join(problems)
    assert "missing.png" in text and "boom" in text and "undefinedFunction" in text, problems
    assert checks["broken"] == ["gone"]

    # the page's security policy: a picture from a file (here one that exists) is blocked, and reported
    from chimeramix.html_report import CSP

    Image.new("RGB", (4, 4)).save(tmp_path / "there.png")
    (tmp_path / "csp.html").write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
                                       '</head><body><img src="there.png" alt="outside"></body></html>')
    problems, checks = _load(browser, tmp_path / "profile2", (tmp_path / "csp.html").as_uri())
    assert any("there.png" in p for p in problems), problems
    assert checks["broken"] == ["outside"]


def test_page_renders_in_chromium_without_errors(experiment, tmp_path):
    browser = _chromium()
    _, res = experiment
    url = res.table_html.resolve().as_uri()
    shot = tmp_path / "page.png"
    r = _run_chromium(browser, tmp_path / "p1", f"--screenshot={shot}", url)
    assert shot.is_file(), r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        # a rendered page: text, tables and pictures make many colours, a blank or error page a handful
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 64

    r = _run_chromium(browser, tmp_path / "p2", "--dump-dom", url)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = html.unescape(r.stdout)
    for cell in _markdown_cells(res.table_md):
        assert cell in dom, cell
    for row in res.rows:
        assert f"{row.mean:.2f} ± " in dom

    problems, checks = _load(browser, tmp_path / "p3", url)
    assert problems == []
    assert checks["images"] == _page(res).count("<img ") and checks["broken"] == []
    assert checks["overflow"] <= 0  # nothing wider than a laptop's window
    assert "Test images the Baseline gets wrong" in checks["text"]

    # printed: the print style hides nothing the tables need and nothing runs off an A4 page's width
    problems, checks = _load(browser, tmp_path / "p4", url, width=720, height=1000, media="print")
    assert problems == [] and checks["broken"] == [] and checks["overflow"] <= 0


def _markdown_cells(md: Path) -> list[str]:
    """Every cell of the markdown tables' body rows (what the page must show as well)."""
    cells = []
    for line in md.read_text().splitlines():
        if line.startswith("| ") and not line.startswith(("| method", "| ---")):
            cells += [c.strip() for c in line.strip("|").split(" | ")]
    return cells
