"""The reader page in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium against ``mriqa reader-study serve`` in a subprocess.

10 choices by key presses -> exactly 10 judgments in the database; the server is then killed with SIGKILL
while a choice is pending (and a judgment that is already stored is queued again, as when an answer was lost),
restarted on the same port: the page delivers the pending choice once, the re-queued one is not stored twice,
and further choices go on. Saves the screenshot ``docs/img/reader_study.png``. Skips (with the reason) when
Chromium, chromedriver, selenium or flask is missing, and fails instead under ``MRIQA_REQUIRE_BROWSER=1``
(``.ci/run`` sets it).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "docs" / "img" / "reader_study.png"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    for module in ("selenium", "flask"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module} not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser_ready():
    reason = _missing()
    if reason is not None:
        if os.environ.get("MRIQA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required (MRIQA_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)


def _phantom(n: int = 96) -> np.ndarray:
    """A head-like phantom ``[n, n]`` float32: ellipses of different intensities."""
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    img = np.zeros((n, n), np.float32)
    for cx, cy, ax, ay, v in ((0, 0, 0.8, 0.95, 1.0), (0, 0, 0.7, 0.85, -0.6), (-0.25, 0.1, 0.15, 0.35, 0.5),
                              (0.25, 0.1, 0.15, 0.35, 0.5), (0, -0.5, 0.1, 0.1, 0.7), (0, 0.55, 0.2, 0.1, 0.3)):
        img += v * (((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1)
    return img


def _make_study(tmp_path: Path) -> Path:
    from mriqa.reader_study.study import build_study
    from recon.io.fastmri_h5 import write_reconstruction_h5

    rng = np.random.default_rng(0)
    base = np.stack([_phantom() * (1 + 0.1 * k) for k in range(3)])
    files = []
    for method, sd in (("zf", 0.25), ("sense", 0.1), ("l1", 0.05), ("modl", 0.02)):
        f = tmp_path / f"{method}.h5"
        write_reconstruction_h5(f, np.abs(base + sd * rng.standard_normal(base.shape)).astype(np.float32),
                                attrs={"method": method, "acceleration": 4.0})
        files.append(f)
    return build_study(tmp_path / "study", files, name="browser test").root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(study: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "mriqa", "reader-study", "serve", str(study), "--port",
                                 str(port), "--seed", "0"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/study", timeout=2) as r:
                json.load(r)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not answer within 30 s: {log.read_text()[-2000:]}")


def _rows(study: Path) -> list[tuple]:
    conn = sqlite3.connect(study / "study.sqlite", timeout=10)
    try:
        return conn.execute("SELECT uuid, reader, left_id, right_id, choice FROM judgments ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_browser_choices_survive_sigkill(browser_ready, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    study = _make_study(tmp_path)
    port = _free_port()
    log = tmp_path / "server.log"
    server = _start_server(study, port, log)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,560", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=opts)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"http://127.0.0.1:{port}/")
        name = driver.find_element(By.ID, "reader")
        name.send_keys("reader one", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-pair"))

        def pair() -> str:
            return driver.find_element(By.TAG_NAME, "body").get_attribute("data-pair") or ""

        def count() -> int:
            return int(driver.find_element(By.ID, "count").text)

        def press(key: str, expect: int) -> None:
            before = pair()
            driver.find_element(By.TAG_NAME, "body").send_keys(key)
            wait.until(lambda d: count() == expect and pair() and pair() != before)

        keys = [Keys.ARROW_LEFT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN, Keys.ARROW_LEFT, Keys.ARROW_RIGHT]
        for k in range(10):
            press(keys[k % len(keys)], k + 1)
        rows = _rows(study)
        assert len(rows) == 10
        assert {r[1] for r in rows} == {"reader one"} and {r[4] for r in rows} == {"left", "right", "tie"}
        assert all({r[2], r[3]} != {s[2], s[3]} for r, s in zip(rows, rows[1:]))  # no pair twice in a row

        # SIGKILL mid-study: a choice made while the server is dead waits in the page's queue; a judgment
        # that is already stored is queued again (an answer lost in the crash): it must not be doubled
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        before = pair()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(lambda d: "unreachable" in d.find_element(By.ID, "status").text)
        uid, reader, left, right, choice = rows[-1]
        driver.execute_script(
            "const k = 'mriqa-pending:' + location.host; const q = JSON.parse(localStorage.getItem(k) || '[]');"
            "q.push(arguments[0]); localStorage.setItem(k, JSON.stringify(q));",
            {"id": uid, "reader": reader, "left": left, "right": right, "choice": choice})
        assert len(_rows(study)) == 10
        server = _start_server(study, port, log)
        wait.until(lambda d: count() == 11 and pair() and pair() != before)
        for k in range(5):
            press(keys[k % len(keys)], 12 + k)
        rows = _rows(study)
        sent = driver.execute_script("return window.mriqaSent")
        assert len(rows) == 16 == len(sent)  # nothing lost, nothing doubled
        assert sorted(r[0] for r in rows) == sorted(sent)
        assert driver.execute_script("return localStorage.getItem('mriqa-pending:' + location.host)") == "[]"
        png = driver.get_screenshot_as_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        from recon.files import atomic_path

        with atomic_path(SCREENSHOT) as tmp:
            tmp.write_bytes(png)
        # synchronised zoom: a wheel event over one image scales both the same way
        transforms = driver.execute_script(
            "const p = document.getElementById('pane-left'), r = p.getBoundingClientRect();"
            "p.dispatchEvent(new WheelEvent('wheel', {deltaY: -400, clientX: r.left + 50, clientY: r.top + 50,"
            " bubbles: true, cancelable: true}));"
            "return ['img-left', 'img-right'].map((i) => document.getElementById(i).style.transform);")
        assert transforms[0] == transforms[1] and "scale(" in transforms[0] and "scale(1)" not in transforms[0]
    finally:
        driver.quit()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    rows_after = _rows(study)
    assert len(rows_after) == 16 and len({r[0] for r in rows_after}) == 16
    shutil.rmtree(tmp_path / "chrome", ignore_errors=True)
