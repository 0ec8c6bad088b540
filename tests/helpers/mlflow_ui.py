"""Start `mlflow ui` on 127.0.0.1 and look at it with a real headless Chromium."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
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


def table_view_path(experiment_id: str, view: str) -> str:
    """The run list of an experiment under a shared view (`mlflow.sharedViewState.<view>`)."""
    return f"/#/experiments/{experiment_id}/runs?viewStateShareKey={view}"


def compare_path(experiment_id: str, run_ids: list[str]) -> str:
    """The Compare view of runs (what "Compare" on selected runs opens)."""
    query = urllib.parse.urlencode({"runs": json.dumps(run_ids),
                                    "experiments": json.dumps([experiment_id])})
    return f"/#/compare-runs?{query}"


def render(url: str, screenshot: Path, budget_ms: int = 20000,
           window: tuple[int, int] = (2800, 900)) -> str:
    """Load `url` in headless Chromium: save a screenshot and return the rendered DOM."""
    profile = screenshot.parent / ".chromium-profile"
    common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
              f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180,
                   check=True)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180,
                         check=True).stdout
    shutil.rmtree(profile, ignore_errors=True)
    return dom


class _GridCells(HTMLParser):
    """Texts of the run table's cells: rows[run id][column id] (AG Grid: a row's `row-id` is its
    run id, a cell's `col-id` its column, e.g. "metrics.`bleu`")."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._open: list[tuple[str | None, str | None]] = []  # (row id, col id) per open div

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "div":
            return
        attr = dict(attrs)
        row, col = (self._open[-1] if self._open else (None, None))
        if attr.get("role") == "row" and attr.get("row-id"):
            row = attr["row-id"]
        if attr.get("role") == "gridcell" and row is not None:
            col = attr.get("col-id")
            self.rows.setdefault(row, {})[col] = ""
        self._open.append((row, col))

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        row, col = self._open[-1] if self._open else (None, None)
        if row is not None and col is not None:
            self.rows[row][col] += data.strip()


def grid_cells(dom: str) -> dict[str, dict[str, str]]:
    """run id -> column id -> the text the run list shows in that cell."""
    parser = _GridCells()
    parser.feed(dom)
    return parser.rows
