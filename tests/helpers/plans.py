"""What each engine would run in a project folder, as DVC stage names (`train-<task>-<system>`),
and edits of its files that are undone afterwards (content and modification time)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.project import dvc, snakemake

COMMAND = re.compile(r"^(?:Shell command: )?(?:python -m pipeline|torchrun .*? -m pipeline) (\w+)(.*?)"
                     r"(?: > logs/.*)?$")


def snakemake_plan(work: Path, params: str, *targets: str) -> set[str]:
    """The jobs `snakemake -n` plans, named like DVC stages."""
    out = snakemake(work, params, "-n", "-p", *targets)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    jobs = set()
    for line in out.stdout.splitlines():
        match = COMMAND.match(line.strip())
        if match:
            words = shlex.split(match.group(2))
            values = [v for k, v in zip(words[::2], words[1::2]) if k in ("--task", "--system")]
            jobs.add("-".join([match.group(1), *values]))
    return jobs


def dvc_changed(work: Path) -> set[str]:
    """The stages `dvc status` reports as changed (their own inputs, code or parameters)."""
    out = dvc(work, "status", "--json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {name.rsplit(":", 1)[-1] for name in json.loads(out.stdout or "{}")}


@contextlib.contextmanager
def edited(path: Path, change) -> Iterator[None]:
    """Rewrite `path` with `change(text)` for the block; restore its bytes and times after
    (bytes: a text round trip would turn CRLF line ends into LF)."""
    data, times = path.read_bytes(), os.stat(path)
    path.write_bytes(change(data.decode("utf-8")).encode("utf-8"))
    try:
        yield
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
