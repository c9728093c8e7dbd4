"""`cockpit serve`: the cockpit through textual-serve, driven over its real page and websocket (the browser's
part, xterm.js drawing the stream, is the one thing not here)."""
import asyncio
import base64
import itertools
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from core.store import RunStore
from recorded import build_recorded_run

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "20231114-000000-demo"
ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(runs: Path, *args: str):
    """`cockpit serve` in a subprocess; yields the URL it printed once it is listening."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--runs-dir", str(runs), "--port", str(port),
                             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = proc.stdout.readline().split()[-1]
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _read_until(ws, text: str, seen: list[str], timeout_s: float = 60.0) -> str:
    """The screen stream (escape codes dropped) until `text` appears in it."""
    async with asyncio.timeout(timeout_s):
        while text not in "".join(seen):
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                seen.append(ESCAPES.sub("", msg.data.decode("utf-8", "replace")))
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise AssertionError(f"websocket closed before {text!r} showed: {''.join(seen)[-2000:]}")
    return "".join(seen)


async def _drive(url: str, paths) -> tuple[int, str]:
    """Open the page, then its websocket: the runs screen shows; Enter attaches the run, whose manual gate
    opens its dialog; `a` approves, and the decision reaches the run's store."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as page:
            status, html = page.status, await page.text()
        ws_url = re.search(r'(ws://[^"\']+/ws)', html).group(1)
        async with session.ws_connect(ws_url + "?width=120&height=40") as ws:
            seen: list[str] = []
            runs = await _read_until(ws, RUN_ID, seen)
            await ws.send_json(["stdin", "\r"])
            await _read_until(ws, "Approve", seen)
            await ws.send_json(["stdin", "a"])
            await _decided(paths)
    return status, runs


async def _decided(paths, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not _approved(paths):
            await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
def test_a_browser_page_drives_the_cockpit_over_its_websocket(tmp_path):
    paths = build_recorded_run(tmp_path / "runs", "gate", run_id=RUN_ID)
    with serving(tmp_path / "runs") as url:
        assert url.startswith("http://127.0.0.1:")
        status, runs = asyncio.run(_drive(url, paths))
    assert status == 200 and "runs in" in runs
    with RunStore(paths.db) as store:
        assert store.decision("sft")["by"].startswith("tui:")  # decided in the served cockpit


def test_a_wider_address_needs_the_flag_and_then_a_token(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    refused = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--runs-dir", str(runs), "--host", "0.0.0.0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr and "Traceback" not in refused.stderr

    async def visit(url: str) -> tuple:
        base = url.split("?")[0]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(base) as page, session.get(base + "ws") as ws:
                denied = (page.status, ws.status)
            async with session.get(url) as page:  # ?token= sets the cookie the page's websocket then carries
                shown = page.status
            async with session.ws_connect(base + "ws?width=80&height=24") as ws:
                opened = ws.closed is False
        return denied, shown, opened

    public = "http://trainbox.example:8000"
    with serving(runs, "--host", "0.0.0.0", "--allow-remote", "--public-url", public) as url:
        assert re.fullmatch(re.escape(public) + r"/\?token=[\w-]{20,}", url)  # a fresh random token
    with serving(runs, "--host", "0.0.0.0", "--allow-remote", "--token", "s3cret") as url:
        assert url.startswith("http://0.0.0.0:") and url.endswith("/?token=s3cret")
        assert asyncio.run(visit(url.replace("0.0.0.0", "127.0.0.1"))) == ((403, 403), 200, True)


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt install chromium)")
@pytest.mark.timeout(240)
def test_headless_chromium_shows_the_cockpit_and_its_keys_reach_the_app(tmp_path):
    """A real browser: the page draws the cockpit (screenshot kept as browser.png), and key presses typed into
    it approve the run's manual gate."""
    paths = build_recorded_run(tmp_path / "runs", "gate", run_id=RUN_ID)
    port = _free_port()
    with serving(tmp_path / "runs") as url:
        browser = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                                    f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'profile'}",
                                    "--window-size=1280,860", url], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            shot = asyncio.run(_browse(port, url, paths))
        finally:
            browser.terminate()
            browser.wait(timeout=20)
    (tmp_path / "browser.png").write_bytes(shot)
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000  # a drawn page, not a blank one


async def _browse(port: int, url: str, paths) -> bytes:
    """Through the DevTools protocol: wait for the cockpit's first bytes, press Enter (attach the run; its
    gate dialog opens) and `a` until the approval is in the store; then a screenshot."""
    async with aiohttp.ClientSession() as session:
        page = await _devtools_page(session, port, url)
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as cdp:
            call = _cdp_caller(cdp)
            await call("Emulation.setFocusEmulationEnabled", enabled=True)
            async with asyncio.timeout(60):
                while not (await call("Runtime.evaluate", expression="!!document.body && document.body.classList"
                                      ".contains('-first-byte')"))["result"].get("value"):  # body: once loaded
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # the runs list fills in from its reader thread
            await call("Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
            await _press(call, "Enter", "\r", 13)
            async with asyncio.timeout(60):
                while not _approved(paths):
                    await _press(call, "a", "a", 65)
                    await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            return base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])


async def _devtools_page(session, port: int, url: str) -> dict:
    async with asyncio.timeout(60):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as listing:
                    pages = [p for p in await listing.json() if p.get("type") == "page" and p["url"].startswith(url)]
                if pages:
                    return pages[0]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


def _cdp_caller(cdp):
    ids = itertools.count(1)

    async def call(method: str, **params) -> dict:
        sent = next(ids)
        await cdp.send_json({"id": sent, "method": method, "params": params})
        while True:
            msg = await cdp.receive_json()
            if msg.get("id") == sent:
                assert "error" not in msg, msg
                return msg.get("result", {})
    return call


async def _press(call, key: str, text: str, code: int) -> None:
    await call("Input.dispatchKeyEvent", type="keyDown", key=key, text=text, windowsVirtualKeyCode=code)
    await call("Input.dispatchKeyEvent", type="keyUp", key=key, windowsVirtualKeyCode=code)


def _approved(paths) -> bool:
    with RunStore(paths.db) as store:
        row = store.decision("sft")
    return row is not None and row["decision"] == "approve"
