"""Test-only start-up hook: a training job pauses for good right after saving the state of step k.

tests/test_faults.py puts this folder on the jobs' PYTHONPATH with PAUSE_AFTER_STEP=k and
PAUSE_MARKER=<file>. When a process imports `pipeline.checkpoint`, its `save_state` is wrapped:
after the state of step k is written, the marker file is created and the process blocks until a
signal ends it. The test waits for the marker, then interrupts the pipeline at a known point: the
training cannot finish first, whatever the machine's speed. Nothing in `pipeline/` knows of this.
"""

import importlib.abc
import importlib.util
import os
import signal
import sys
from pathlib import Path

TARGET = "pipeline.checkpoint"


def _pausing(save_state, step: int, marker: Path):
    def save_state_then_pause(*args, **kwargs):
        path = save_state(*args, **kwargs)
        if kwargs.get("step") == step:
            marker.write_text(str(path))
            while True:
                signal.pause()      # SIGINT raises KeyboardInterrupt here, as in any Ctrl-C
        return path

    return save_state_then_pause


class _WrapAfterImport(importlib.abc.MetaPathFinder):
    """Finds `pipeline.checkpoint` with the other finders and wraps its save_state once loaded."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)              # one module, patched once
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_then_wrap(module):
            exec_module(module)
            module.save_state = _pausing(module.save_state, self.step, self.marker)

        spec.loader.exec_module = exec_then_wrap
        return spec


if os.environ.get("PAUSE_AFTER_STEP") and os.environ.get("PAUSE_MARKER"):
    sys.meta_path.insert(0, _WrapAfterImport(int(os.environ["PAUSE_AFTER_STEP"]),
                                             Path(os.environ["PAUSE_MARKER"])))
