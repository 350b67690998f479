"""Stage `examples`: MLM/NSP pretraining instances, as google-research/bert's
``create_pretraining_data.py`` makes them, streamed, on several processes, byte-identical for
any number of them.

`params` holds `ExamplesParams`; `instances` the original's rules
(`create_instances_from_documents`, NSP random next, `truncate_seq_pair`, `assemble_instances`);
`masking` the masked-LM rule (`MaskingRule`, 80/10/10, whole words, `mask_batch`), which
pretrain also applies for ``masking: dynamic``; `segmentation` finds the whole words of
unsegmented scripts with a word segmenter (jieba for Chinese); `units` cuts a split into work
units and makes each one's instances with its own generator; `processes` shares the units
between processes;
`write` is the stage (input checks, `write_examples`); `metrics` and `meta` describe what was
written (metrics/examples.json, data/examples/meta.json). See docs/examples.md.
"""
