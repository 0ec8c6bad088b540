"""Start `mlflow ui` on 127.0.0.1 and look at it with a real headless Chromium."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.project import BIN, engine_env

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(db: Path, timeout: float = 900) -> Iterator[str]:
    """Serve the runs in `db`; yields the base URL once /health answers (`timeout` only catches a
    server that never answers: a busy machine takes minutes). Stopped on exit."""
    port = _free_port()
    proc = subprocess.Popen([BIN / "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=engine_env(),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited with {proc.returncode}")
            time.sleep(1)
        else:
            raise TimeoutError(f"mlflow ui did not answer on {url} within {timeout} s")
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()


def render(url: str, screenshot: Path, budget_ms: int = 20000) -> str:
    """Load `url` in headless Chromium: save a screenshot and return the rendered DOM."""
    profile = screenshot.parent / ".chromium-profile"
    common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
              f"--virtual-time-budget={budget_ms}", "--window-size=1600,1000"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180,
                   check=True)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    shutil.rmtree(profile, ignore_errors=True)
    return dom
