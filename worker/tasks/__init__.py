"""Celery tasks, one module per domain: thin edges that load rows by id, call the engine or a
service, and commit. `worker.celery_app` lists them in TASK_MODULES, which registers them."""
