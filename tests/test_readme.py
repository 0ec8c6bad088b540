"""Every shell command of the README works as written: each is run in a fresh copy of the
project (a dry run where it would train or download), or, for a command that needs what a
reader brings (a checkpoint, a server), checked as far as the project can check it.

A README command that no rule below knows fails the test: add a rule when you add a command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.helpers.project import BIN, REPO, engine_env, project_copy

pytestmark = pytest.mark.slow
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def readme_commands() -> list[str]:
    """The README's shell commands: lines of its bash blocks, continuations joined, comments cut."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


class Runner:
    """Runs README commands in a project folder, substituting what a reader fills in."""

    def __init__(self, work: Path, scratch: Path):
        self.work, self.scratch, self.env = work, scratch, engine_env(**GIT_ENV)
        self.substitutions = {"REPO": str(work), "/shared/diffuseq-store": str(scratch / "store"),
                              "<older commit>": "HEAD"}

    def shell(self, command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        for placeholder, value in self.substitutions.items():
            command = command.replace(placeholder, value)
        out = subprocess.run(["bash", "-c", command], cwd=cwd or self.work, text=True,
                             capture_output=True, env=self.env, timeout=1200)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out


def _check_pipeline_arguments(runner: Runner, command: str) -> None:
    """A CLI call that needs the reader's files: its arguments must parse."""
    from pipeline.__main__ import build_parser

    build_parser().parse_args(shlex.split(command)[3:])


def _check_experiment_override(runner: Runner, command: str) -> None:
    """`dvc exp run -S file:key=value`: the file exists, holds the key, and the changed value
    still validates."""
    spec = shlex.split(command)[shlex.split(command).index("-S") + 1]
    path, assignment = spec.split(":", 1)
    key, value = assignment.split("=", 1)
    data = yaml.safe_load((runner.work / path).read_text())
    node = data
    for part in key.split(".")[:-1]:
        node = node[part]
    assert key.split(".")[-1] in node, f"{command}: no key {key} in {path}"
    node[key.split(".")[-1]] = yaml.safe_load(value)
    changed = runner.scratch / "override.yaml"
    changed.write_text(yaml.safe_dump(data))
    load_config(changed)


# (pattern, what to do): the first matching rule handles a command
RULES = [
    (r"^make (demo|test)$", lambda r, c: r.shell(c.replace("make", "make -n", 1))),
    (r"^export (\w+)=(\S+)$", lambda r, c: r.env.update([c.split()[1].split("=", 1)])),
    (r"^snakemake ", lambda r, c: r.shell(c + " -n")),
    (r"^dvc repro( \S+)?$", lambda r, c: r.shell(c.replace("dvc repro", "dvc status"))),
    (r"^dvc (metrics|plots) show$", lambda r, c: r.shell(c)),
    (r"^dvc exp run -S ", _check_experiment_override),
    (r"^python -m pipeline ", _check_pipeline_arguments),
    (r"^\.venv/bin/mlflow ui ", lambda r, c: r.shell(f"{BIN}/mlflow ui --help")),
    (r"^dvc remote add ", lambda r, c: r.shell(c)),
    (r"^git add -A && git commit", lambda r, c: r.shell(c)),
    # A fresh project has no outputs to pull or check out: `--allow-missing` lets the commands
    # run here; tests/test_versioning.py runs the same sequence after a real run, without it.
    (r"^git clone REPO work && cd work && dvc pull$",
     lambda r, c: r.shell(c.replace("work", str(r.scratch / "clone")) + " --allow-missing",
                          cwd=r.scratch)),
    (r"^git checkout <older commit> && dvc checkout$",
     lambda r, c: r.shell(c + " --allow-missing")),
]


def test_every_readme_command_works(tmp_path):
    work = project_copy(tmp_path / "project", "params/default.yaml")
    shutil.copytree(REPO / "dvc", work / "dvc")            # the committed dvc.yaml files
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    os.symlink(BIN.parent, work / ".venv")
    runner = Runner(work, tmp_path)
    commands = readme_commands()
    assert len(commands) > 10
    for command in commands:
        rule = next((action for pattern, action in RULES if re.match(pattern, command)), None)
        assert rule is not None, f"no rule for the README command {command!r} (see RULES)"
        rule(runner, command)
