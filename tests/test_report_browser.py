"""The report as a browser shows it: served over HTTP, rendered by headless Chromium.

Why beyond tests/test_reports.py: that test proves the PNGs decode; only a browser proves
the page renders (the data URIs are accepted, nothing is fetched that is not there, no
script error). Serves ``$CONVBENCH_REPORT_DIR`` (``nox -s report`` sets it to reports/out)
or else a report built here from the synthetic results of tests/test_reports.py. The
screenshot is kept in reports/artifacts/ (git-ignored) for a person to look at. Skips with
the reason when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reports import write_results  # tests/ is on sys.path (rootdir conftest)

from reports.__main__ import main

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and Path(p).is_file()),
                None)
ARTIFACTS = Path(__file__).resolve().parent.parent / "reports" / "artifacts"
#: What Chromium's stderr says when the page breaks: a script error or a missing resource.
BAD_LINES = ("Uncaught", "Failed to load resource")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"http.server did not listen on port {port} within {timeout} s")


@pytest.fixture
def report_dir(tmp_path) -> Path:
    given = os.environ.get("CONVBENCH_REPORT_DIR")
    if given:
        if not (Path(given) / "index.html").is_file():
            pytest.fail(f"CONVBENCH_REPORT_DIR={given} has no index.html")
        return Path(given)
    write_results(tmp_path / "a.jsonl", "alpha", 1.0)
    assert main(["build", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "out"),
                 "--no-correctness"]) == 0
    return tmp_path / "out"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                    "(apt-get install -y chromium)")
def test_report_renders_in_chromium(report_dir, tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(report_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    try:
        _wait_for(port)
        run = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
             "--window-size=1400,3000", f"http://127.0.0.1:{port}/index.html"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()  # the one process this test started
        server.wait(timeout=10)
    bad = [line for line in run.stderr.splitlines() if any(b in line for b in BAD_LINES)]
    assert not bad, "\n".join(bad)
    assert shot.is_file(), f"no screenshot; chromium exit {run.returncode}:\n{run.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000, "the screenshot is nearly empty"
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.std() > 0.05, "the page rendered as one colour"
