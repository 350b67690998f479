"""The pretrain stage: BERT's MLM/NSP pretraining with DeepSpeed ZeRO, from data/examples and
data/tokenizer to checkpoints (for resume) and a transformers-format export.

`params` holds `PretrainParams` (with `ModelParams`, the BERT shape), the batch arithmetic
and what needs a GPU; `inputs` checks the inputs in one line before any worker starts; `data`
orders the examples (`BatchPlan`) and collates them (`Collator`, with the dynamic masking);
`rng` keys every random draw by (seed, domain, ...); `engine` joins the job and builds the
optimizer, the learning-rate schedule and the DeepSpeed config; `step` is one optimizer step;
`checkpoint` saves and resumes (`safe_load`: every file read weights-only); `progress`
reports; `evaluation` scores the held-out split against the unigram baseline; `export` writes
the model; `train` is the run and its loop; `launch` starts the ranks of a one-machine job.
docs/pretrain.md has the semantics in prose.
"""
