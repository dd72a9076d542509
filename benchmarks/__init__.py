"""Performance harness of issue #8 (see benchmarks/README.md). Importing this package
imports nothing heavy: TF and torch load only inside the worker subprocesses."""
