"""The planner: what a fine-tuning run will do, decided and checked before anything trains.

Torch-free, so the web process and the workers both import it:
- `defaults`: the one home of every default value of a run;
- `config`: TrainingConfig, the validated configuration;
- `presets`: the classic recipe and the auto preset;
- `estimate`: peak memory and time, before running.
It imports nothing from `app` or `worker`; the engine (`worker/training/`) runs what it plans.
"""
