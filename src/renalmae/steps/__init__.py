"""Pipeline steps: one pure function `run(params, ...)` per module, wrapped by the CLI, DVC and KFP.

A step takes a validated `Params` and input paths, writes its outputs atomically under the output path
it is given, and returns it. It reads no environment and no global configuration. What each step reads
and writes is declared once, in `renalmae.pipeline`.
"""
