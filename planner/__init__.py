"""The planner: what a fine-tuning run will do, decided and checked before anything trains.

Torch-free, so the web process and the workers both import it: `config` (TrainingConfig),
`presets` (classic and auto) and `estimate` (peak memory and time). It imports nothing from `app` or `worker`; the engine
(`worker/training/`) runs the configurations it produces.
"""
