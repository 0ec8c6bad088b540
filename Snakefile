# The whole DAG: download -> prepare -> train -> sample -> evaluate -> report.
# Rules are built from pipeline/stages.py (the one declaration of the DAG; dvc.yaml is generated
# from it too). Choose the parameter file with `--config params=params/paper.yaml`.
from pipeline.config import load_config


configfile: "workflow/config.yaml"


CFG = load_config(config["params"])


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


use_parameter_file(config["params"])


onstart:
    keep_dvc_yaml_in_step()


rule all:
    default_target: True
    input:
        final_targets(),
