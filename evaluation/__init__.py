"""Scoring checkpoints.

evaluator           one checkpoint on a split: restore, stream top-1 / top-5, record
ledger              every checkpoint of a directory, raw and averaged, and the best
checkpoint_average  the element-wise mean of the last K checkpoints
config              the evaluator's settings (EvalConfig, LedgerConfig, WatchConfig) from
                    its flags and what sources read
sources             what the evaluator reads first: dataset, model_spec.json, checkpoints
watch               --watch: each new checkpoint of a training run
"""
