"""Headless Chromium for end-to-end tests: Debian's /usr/bin/chromium driven by Playwright.

No browser is downloaded (never `playwright install`): the tests use the system Chromium
and skip when it or the playwright package is missing. Every request that leaves loopback
is refused and recorded, so a test can also check that a page does not phone home.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MASKGIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage",
]
LOCAL_PREFIXES = ("http://127.0.0.1", "http://localhost", "ws://127.0.0.1", "ws://localhost",
                  "data:", "blob:", "about:")


def require_browser():
    """The playwright module, or pytest.skip with the reason."""
    if not CHROMIUM.is_file() and not shutil.which(str(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download is needed)")
    return playwright.sync_api


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chromium_page(profile_dir: Path, viewport=(1400, 1100), timeout_ms: int = 30_000):
    """Yield (page, external_requests): a fresh headless page with an empty profile."""
    sync_api = require_browser()
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile_dir), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
        try:
            def route(r):
                url = r.request.url
                if url.startswith(LOCAL_PREFIXES):
                    r.continue_()
                else:
                    external.append(url)
                    r.abort()

            ctx.route("**/*", route)
            ctx.set_default_timeout(timeout_ms)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield page, external
        finally:
            ctx.close()
