"""DiffuSeq reproduction pipeline: one subcommand per stage of the DAG, plus tools.

The only code that reads argv. Each stage takes a parameter file and its grid cell, resolves its paths from `pipeline.stages`,
opens a tracking run and calls one function. Snakemake and DVC call exactly these commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from pipeline import provenance, stages
from pipeline.config import Config, ConfigError, load_config
from pipeline.io import write_json
from pipeline.tracking import flatten, stage_run

LOG = logging.getLogger("pipeline")
DEFAULT_PARAMS = "params/default.yaml"


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _check_cell(cfg: Config, task: str | None, system: str | None, *, blocks: bool = True) -> None:
    """The grid cell exists, and (with `blocks`) its system's family accepts the system's blocks
    (checked before a stage claims, deletes or writes anything)."""
    if task is not None and task not in cfg.tasks:
        raise ConfigError(f"{cfg.path}: no task '{task}' (tasks: {sorted(cfg.tasks)})")
    if system is not None and system not in cfg.tasks[task].systems:
        raise ConfigError(f"{cfg.path}: system '{system}' is not run on task '{task}' "
                          f"(tasks.{task}.systems: {cfg.tasks[task].systems})")
    if system is not None and blocks:
        from pipeline.models.registry import system_configs

        try:
            system_configs(cfg.systems[system], f"systems.{system}")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cfg.path}: systems.{system}: {exc}") from exc


def _record(cfg: Config, stage: str, out_dir: Path, task: str, system: str | None = None) -> None:
    data_dir = Path(stages.PROCESSED.format(task=task))
    write_json(out_dir / "provenance.json", provenance.record(cfg, stage, task, system, data_dir))


def download(cfg: Config, task: str) -> None:
    from pipeline.data.download import download_task

    out = stages.stage_outputs(cfg, "download", task=task)["raw"]
    with stage_run(cfg, "download", task, tags={"task": task}) as tracker:
        download_task(task, cfg.tasks[task], out)
        tracker.log_params(flatten(dataclasses.asdict(cfg.tasks[task].source), "source"))


def prepare(cfg: Config, task: str) -> None:
    from pipeline.data.prepare import prepare_task

    paths = stages.stage_inputs(cfg, "prepare", task=task)
    out = stages.stage_outputs(cfg, "prepare", task=task)["data"]
    with stage_run(cfg, "prepare", task, tags={"task": task}) as tracker:
        stats = prepare_task(task, cfg.tasks[task], paths["raw"], out)
        _record(cfg, "prepare", out, task)
        tracker.log_params(flatten(dataclasses.asdict(cfg.tasks[task].tokenizer), "tokenizer"))
        tracker.set_tags(data_sha256=stats.get("raw_sha256"))
        tracker.log_artifact(out / "stats.json")


def _cell_tags(cfg: Config, stage: str, task: str, system: str) -> dict[str, str | None]:
    data_dir = Path(stages.PROCESSED.format(task=task))
    return {"task": task, "system": system, "family": cfg.systems[system].family,
            "code_version": provenance.code_version(),
            "params_hash": provenance.params_hash(cfg, task, system),
            "data_sha256": provenance.data_checksum(data_dir)}


def train(cfg: Config, task: str, system: str) -> None:
    from pipeline import checkpoint
    from pipeline.train import train_system

    paths = stages.stage_inputs(cfg, "train", task=task, system=system)
    out = stages.stage_outputs(cfg, "train", task=task, system=system)["model"]
    state = Path(stages.TRAIN_STATE.format(task=task, system=system))
    if _is_rank_zero():  # other ranks read the state only after the process group has formed
        checkpoint.claim_state_dir(state, provenance.job_fingerprint(cfg, "train", task=task,
                                                                     system=system))
    else:
        train_system(cfg, task, system, paths["data"], out, state)
        return
    with stage_run(cfg, "train", task, system, _cell_tags(cfg, "train", task, system)) as tracker:
        tracker.log_params(flatten(dataclasses.asdict(cfg.systems[system]), "system"))
        train_system(cfg, task, system, paths["data"], out, state, log=tracker)
        tracker.log_training_summary()
        _record(cfg, "train", out, task, system)
        tracker.set_tags(checkpoint=str(out))


def sample(cfg: Config, task: str, system: str) -> None:
    from pipeline.generate import sample_system

    paths = stages.stage_inputs(cfg, "sample", task=task, system=system)
    out = stages.stage_outputs(cfg, "sample", task=task, system=system)["samples"]
    with stage_run(cfg, "sample", task, system, _cell_tags(cfg, "sample", task, system)) as tracker:
        tracker.log_params(flatten(dataclasses.asdict(cfg.sampling), "sampling"))
        sample_system(cfg, task, system, paths.get("model"), paths["data"], out)
        _record(cfg, "sample", out, task, system)
        generation = json.loads((out / "generation.json").read_text())
        tracker.log(**{k: v for k, v in flatten(generation).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracker.log_artifact(out / "generation.json")


def evaluate(cfg: Config, task: str, system: str) -> None:
    from pipeline.evaluate import evaluate_system

    paths = stages.stage_inputs(cfg, "evaluate", task=task, system=system)
    out = stages.stage_outputs(cfg, "evaluate", task=task, system=system)["metrics"]
    with stage_run(cfg, "evaluate", task, system, _cell_tags(cfg, "evaluate", task, system)) as tracker:
        metrics = evaluate_system(cfg, task, system, paths["samples"], paths["data"], out)
        table = metrics.get("table", {})
        tracker.log(**{k: v for k, v in table.items() if isinstance(v, (int, float))})
        tracker.log_artifact(out)
        tracker.publish_cell(cfg, task, system, metrics)


def sweep(cfg: Config, task: str, system: str) -> None:
    import torch

    from pipeline.diffusion.sweep import run_sweep
    from pipeline.distributed import resolve_device
    from pipeline.models.registry import load_model, system_configs

    paths = stages.stage_inputs(cfg, "sweep", task=task, system=system)
    out = stages.stage_outputs(cfg, "sweep", task=task, system=system)["sweep"]
    _, decode = system_configs(cfg.systems[system], f"systems.{system}")
    torch.set_num_threads(cfg.compute.threads)
    model = load_model(paths["model"], resolve_device(cfg.compute.device))
    with stage_run(cfg, "sweep", task, system, _cell_tags(cfg, "sweep", task, system)) as tracker:
        records = run_sweep(model, decode, paths["data"], cfg.sweep.grid, cfg.sweep.num_sources,
                            list(cfg.sampling.seeds), cfg.sampling.batch_size, cfg.sweep.mbr_size,
                            out)
        tracker.log_artifact(out)
    LOG.info("%s/%s: %d sweep points -> %s", task, system, len(records), out)


def report(cfg: Config) -> None:
    from pipeline.report.tables import write_report

    outs = stages.stage_outputs(cfg, "report")
    metrics = {(t, s): stages.stage_outputs(cfg, "evaluate", task=t, system=s)["metrics"]
               for t, s in cfg.system_cells()}
    sweeps = {(c["task"], c["system"]): stages.stage_outputs(cfg, "sweep", **c)["sweep"]
              for c in stages.cells(cfg, "sweep")}
    with stage_run(cfg, "report") as tracker:
        write_report(cfg, metrics, outs["tables"], outs["figures"], outs["curves"], sweeps)
        tracker.log_artifact(outs["tables"])
        tracker.log_artifact(outs["figures"], "figures")


STAGE_FUNCTIONS = {"download": download, "prepare": prepare, "train": train, "sample": sample,
                   "evaluate": evaluate, "sweep": sweep, "report": report}


def _tool_schema(args: argparse.Namespace) -> None:
    from pipeline.schema import write_schema

    print(write_schema())


def _tool_dvc_yaml(args: argparse.Namespace) -> None:
    from pipeline.dvcgen import write_dvc_yaml

    print(write_dvc_yaml(load_config(args.params), Path(args.out) if args.out else None))


def _tool_dvc_record(args: argparse.Namespace) -> None:
    from pipeline.dvcgen import record_job

    cfg = load_config(args.params)
    cell = {w: getattr(args, w) for w in stages.STAGES[args.stage].wildcards}
    # The job that ran already checked the blocks; importing the families (torch) for it again
    # would cost every recorded job seconds.
    _check_cell(cfg, cell.get("task"), cell.get("system"), blocks=False)
    skipped = record_job(cfg, args.stage, **cell)
    if skipped:
        LOG.warning("not recorded in DVC: %s", skipped)


def _tool_import_release(args: argparse.Namespace) -> None:
    from pipeline.models.release_import import import_to_folder

    import_to_folder(Path(args.checkpoint), Path(args.training_args), Path(args.out),
                     Path(args.tokenizer) if args.tokenizer else None)


def _tool_evaluate_folder(args: argparse.Namespace) -> None:
    from pipeline.evaluate import evaluate_authors_folder, folder_lines
    from pipeline.report.tables import render_table

    cfg = load_config(args.params)
    result = evaluate_authors_folder(Path(args.folder), cfg.evaluation.bertscore, cfg.compute.device,
                                     Path(args.out) if args.out else None)
    print("\n".join(folder_lines(result) + render_table([result], {})))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure (also: PIPELINE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, stage in stages.STAGES.items():
        cmd = sub.add_parser(name, help=stages.STAGE_HELP[name])
        cmd.add_argument("--params", default=os.environ.get(stages.PARAMS_ENV, DEFAULT_PARAMS),
                         help=f"parameter file (default: ${stages.PARAMS_ENV}, else {DEFAULT_PARAMS})")
        for wildcard in stage.wildcards:
            cmd.add_argument(f"--{wildcard}", required=True)
    tool = sub.add_parser("schema", help="regenerate workflow/schemas/params.schema.json")
    tool.set_defaults(tool=_tool_schema)
    tool = sub.add_parser("dvc-yaml", help="generate the dvc.yaml of a parameter file")
    tool.add_argument("--params", default=DEFAULT_PARAMS)
    tool.add_argument("--out", help="default: dvc.yaml for params/default.yaml, "
                                    "dvc/<name>/dvc.yaml for params/<name>.yaml")
    tool.set_defaults(tool=_tool_dvc_yaml)
    tool = sub.add_parser("dvc-record", help="record a finished job in dvc.lock and the DVC cache "
                                             "(Snakemake runs it after each job)")
    tool.add_argument("stage", choices=list(stages.STAGES))
    tool.add_argument("--params", default=os.environ.get(stages.PARAMS_ENV, DEFAULT_PARAMS))
    tool.add_argument("--task")
    tool.add_argument("--system")
    tool.set_defaults(tool=_tool_dvc_record)
    tool = sub.add_parser("import-release",
                          help="convert a checkpoint of the authors' DiffuSeq release to a model folder")
    tool.add_argument("--checkpoint", required=True, help="e.g. ema_0.9999_050000.pt")
    tool.add_argument("--training-args", required=True, help="the release's training_args.json")
    tool.add_argument("--tokenizer", help="local tokenizer folder (default: the run's config_name "
                                          "from the hub, e.g. bert-base-uncased)")
    tool.add_argument("--out", required=True, help="model folder to write (e.g. results/qqp/diffuseq/model)")
    tool.set_defaults(tool=_tool_import_release)
    tool = sub.add_parser("evaluate-folder",
                          help="evaluate a sample folder of the authors' sampler as it is")
    tool.add_argument("--folder", required=True, help="the folder of seed<S>_step<C>.json files")
    tool.add_argument("--params", default="params/default.yaml", help="BERTScore model and device")
    tool.add_argument("--out", help="also write the metrics JSON here")
    tool.set_defaults(tool=_tool_evaluate_folder)
    return parser


def _run(args: argparse.Namespace) -> None:
    if hasattr(args, "tool"):
        args.tool(args)
        return
    cfg = load_config(args.params)
    # Before torch is imported: the same thread count under every engine (Snakemake sets it
    # from the rule's threads, DVC does not), so numbers do not depend on the engine.
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.compute.threads))
    cell = {w: getattr(args, w) for w in stages.STAGES[args.command].wildcards}
    _check_cell(cfg, cell.get("task"), cell.get("system"))
    STAGE_FUNCTIONS[args.command](cfg, **cell)


def main(argv: list[str] | None = None) -> int:
    """Run one command. A failure ends in one line on stderr: exit 2 for bad input (the message
    names the file, key or line), 1 for anything else; `--debug` (or PIPELINE_DEBUG=1) shows
    the traceback instead."""
    from pipeline.data.download import DownloadError
    from pipeline.data.jsonl import DataError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.debug or os.environ.get("PIPELINE_DEBUG"):
        _run(args)
        return 0
    try:
        _run(args)
    except (ConfigError, DataError, DownloadError) as exc:  # bad input: its message says where
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line; the traceback is one flag away
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
