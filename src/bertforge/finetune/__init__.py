"""Fine-tuning: the pretrained export (or the same architecture from random weights, the
``scratch`` baseline) with a new head, trained on one task per ``finetune@<task>`` stage.

`params` holds `FinetuneParams`. `tasks` reads a task from its source (embedded JSON lines, the
GLUE download layout described in `glue`, or the hub) into train, dev and test examples;
`metrics` scores predictions as GLUE does. `pretrained` checks that the export's model and
tokenizer belong together; `data` encodes examples and batches them; `train` is the recipe for
one (init, seed); `runs` trains every (init, seed) of a task in worker processes, writes their
outputs and logs them to MLflow; `summary` reads the per-seed metrics back as mean ± std over
seeds (for this stage's metrics file and for the evaluate and register stages).
"""
