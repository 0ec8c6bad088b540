# One rule per stage of pipeline/stages.py; each runs the stage's CLI command, nothing else.


for _name in S.STAGES:

    rule:
        name:
            _name
        input:
            unpack(rule_inputs(_name)),
        output:
            **rule_outputs(_name),
        params:
            command=rule_command(_name),
            record=rule_record(_name),
            digest=rule_params_digest(_name),
        log:
            rule_log(_name),
        threads: rule_threads(_name)
        priority: rule_priority(_name)
        resources:
            mem_mb=CFG.compute.mem_mb,
            runtime=CFG.compute.runtime_min,
            gpu=rule_gpus(_name),
        conda:
            "../envs/pipeline.yaml"
        shell:
            "{params.command} > {log} 2>&1 && {params.record} >> {log} 2>&1"
