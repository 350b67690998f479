"""The MLflow Model Registry side of bertforge: register with lineage, promote, roll back, trace.

The register stage turns the pipeline's outputs into candidates (`candidates`: the pretrained
encoder and each task's best fine-tuned seed, with their eval metrics from `summary`) and logs
each as a new registered version from code, with its signature and lineage tags (`register`).
Promotion to ``@champion`` is a human step: `promote` holds the gate, the alias moves and
rollback; `lineage` traces a version back to its commit, params, data and runs; `predict` runs a
registered version on one input. `store` addresses versions (``models:/`` URIs) and looks them
up; `params` holds the ``register:`` section of params.yaml.
"""
