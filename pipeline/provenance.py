"""What produced an output: code version, parameter hash, data checksum.

Every stage records this beside its output (`provenance.json`) and as MLflow tags, so any number
in a table can be traced back to the code, parameters and data that made it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from pipeline.config import Config, section_hash

PACKAGE_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """The git commit of the package (with `+dirty` if its files differ), or a hash of its sources."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(PACKAGE_DIR)],
                               cwd=PACKAGE_DIR, capture_output=True, text=True, check=True).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        digest = hashlib.sha256()
        for path in sorted(PACKAGE_DIR.rglob("*.py")):
            digest.update(path.read_bytes())
        return "src-" + digest.hexdigest()[:12]


def params_hash(cfg: Config, task: str | None = None, system: str | None = None) -> str:
    """Hash of the parameter sections a (task, system) cell depends on."""
    sections: list[Any] = [cfg.sampling, cfg.evaluation]
    if task is not None:
        sections.append(cfg.tasks[task])
    if system is not None:
        sections.append(cfg.systems[system])
    return section_hash(*sections)


def data_checksum(processed_dir: Path) -> str | None:
    """The raw data checksum recorded by the prepare stage (None before it ran)."""
    stats = Path(processed_dir) / "stats.json"
    if not stats.is_file():
        return None
    return json.loads(stats.read_text()).get("raw_sha256")


def record(cfg: Config, stage: str, task: str | None = None, system: str | None = None,
           processed_dir: Path | None = None) -> dict[str, Any]:
    """The provenance of one stage's output."""
    import torch

    return {
        "stage": stage, "task": task, "system": system,
        "params_file": cfg.path, "params_hash": params_hash(cfg, task, system),
        "code_version": code_version(),
        "data_sha256": data_checksum(processed_dir) if processed_dir else None,
        "python": platform.python_version(), "torch": torch.__version__,
    }


def job_fingerprint(cfg: Config, stage: str, **cell: str) -> str:
    """Identity of one job: the parameter keys it reads, its input data and its code files. A
    training state may only be resumed by a job with the same fingerprint."""
    from pipeline import stages

    digest = hashlib.sha256(stages.params_digest(cfg, stage, **cell).encode())
    if "task" in cell:
        digest.update(str(data_checksum(Path(stages.PROCESSED.format(task=cell["task"])))).encode())
    for path in stages.code_files(cfg, stage, **cell):
        digest.update(path.encode() + Path(path).read_bytes())
    return digest.hexdigest()[:16]
