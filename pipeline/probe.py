"""The convergence record: validation BLEU of a fixed cheap decode at each validation step of a
training, for families that name such a decode (`Family.probe_decode`).

A diagnostic beside the model, not part of what the train job computes: this module is plumbing
(`pipeline.stages.PLUMBING`), so editing the scoring never retrains a system. The probe uses no
global random state (candidates draw from their own generators, dropout is off in eval mode), so
a probed training gives exactly the weights of an unprobed one.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import SystemConfig
from pipeline.models.base import Family
from pipeline.quick_eval import decode_bleu, load_eval_set
from pipeline.train import Probe

PROBE_SEEDS = (0,)


def convergence_probe(family: Family, system: SystemConfig, decode: object,
                      data_dir: Path) -> Probe | None:
    """A `Probe` scoring the family's cheap decode on the first `train.probe_sources` validation
    sources, or None when the family has none or the system asks for none."""
    if family.probe_decode is None or not system.train.probe_sources:
        return None
    data = load_eval_set(data_dir, "valid", system.train.probe_sources)
    cheap = family.probe_decode(decode)
    return Probe(lambda model: decode_bleu(model, data, cheap, seeds=PROBE_SEEDS,
                                           batch_size=system.train.probe_sources))
