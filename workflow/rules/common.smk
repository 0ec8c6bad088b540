# Helpers that turn the stage table (pipeline/stages.py) into rule inputs, outputs and resources.
import os

from pipeline import stages as S


wildcard_constraints:
    task=r"[A-Za-z0-9_\-]+",
    system=r"[A-Za-z0-9_\-]+",


def use_parameter_file(path):
    """Jobs read the parameter file from the environment, so its name is not in their commands."""
    os.environ[S.PARAMS_ENV] = str(path)


def keep_dvc_yaml_in_step():
    """Before jobs run: the parameter file's dvc.yaml (where there is one) matches it, so that
    each job can be recorded in DVC after it finishes (`rule_record`)."""
    from pipeline.dvcgen import refresh_dvc_yaml

    if refresh_dvc_yaml(CFG):
        print(f"regenerated the dvc.yaml of {CFG.path}")


def final_targets():
    return S.final_targets(CFG)


def rule_outputs(stage):
    spec = S.STAGES[stage]
    templates = {role: path.replace("{report_dir}", CFG.report_dir) for role, path in spec.outs.items()}
    outs = {role: directory(path) if role in spec.directories else path
            for role, path in templates.items()}
    if stage == "report":  # what `snakemake --report` bundles
        outs["tables"] = report(outs["tables"], category="Tables")
        outs["figures"] = report(outs["figures"], patterns=["{name}.png"], category="Figures")
    return outs


def rule_inputs(stage):
    def inputs(wildcards):
        cell = {w: wildcards[w] for w in S.STAGES[stage].wildcards}
        deps = {role: str(path) for role, path in S.stage_inputs(CFG, stage, **cell).items()}
        deps["code"] = S.code_files(CFG, stage, **cell)
        return deps

    return inputs


def rule_command(stage):
    def command(wildcards):
        return S.cli_command(CFG, stage, **{w: wildcards[w] for w in S.STAGES[stage].wildcards})

    return command


def rule_record(stage):
    """After a job: record it in DVC (dvc.lock and cache), so a Snakemake run is versioned too."""

    def record(wildcards):
        cell = {w: wildcards[w] for w in S.STAGES[stage].wildcards}
        return S.record_command(stage, **cell)

    return record


def rule_params_digest(stage):
    def digest(wildcards):
        return S.params_digest(CFG, stage, **{w: wildcards[w] for w in S.STAGES[stage].wildcards})

    return digest


def rule_log(stage):
    cell = "_".join("{%s}" % w for w in S.STAGES[stage].wildcards) or "all"
    return f"logs/{stage}/{cell}.log"


def rule_threads(stage):
    return CFG.compute.threads


def rule_gpus(stage):
    def gpus(wildcards):
        if not S.STAGES[stage].uses_family or CFG.compute.gpus_per_job == 0:
            return 0
        train = CFG.systems[wildcards.system].train
        return max(CFG.compute.gpus_per_job, train.num_processes if train else 1)

    return gpus


def rule_priority(stage):
    """Longest training first (its step count as the proxy), so two cores finish together."""

    def priority(wildcards):
        if stage != "train":
            return 0
        return CFG.systems[wildcards.system].train.steps

    return priority
