"""Background jobs: the broker (in-memory or Redis Streams), task definitions, the scheduler
and the worker process."""
