"""Pipeline steps: one pure function `run(params, ...)` per module, wrapped by the CLI, DVC and KFP.

A step takes a validated `Params` and input paths, writes its outputs atomically under the output
paths it is given, and returns them. It reads no environment and no global configuration.
"""
