"""What runs beside the tasks in every worker process: the heartbeat (and the signals that
start and stop it), the reconciler that repairs lost runs, and the database reporter the
training engine writes its progress through."""
