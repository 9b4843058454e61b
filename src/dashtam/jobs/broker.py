"""The job broker: taskiq's in-memory broker when embedded, Redis Streams in production.

Why `RedisStreamBroker` and not `ListQueueBroker`: a list queue hands a message to a worker by
popping it, so a worker killed mid-job loses the job for good. A stream keeps every delivered
message in the consumer group's pending list until the worker acknowledges it, which we do
only after the job ran (`WHEN_EXECUTED`); a killed worker's message is claimed again by
another worker after `JOB_REDELIVERY_IDLE_SECONDS`. That redelivery is slow (minutes) and
taskiq-redis only looks for idle messages after a read returns something — which the
scheduler's tick message guarantees at least once a tick. The gap is closed by the sync
run's own lease: a run whose worker died is re-queued by the scheduler as soon as its lease
expires, whichever happens first, and every job is idempotent, so a redelivered duplicate
finds its run finished (or running under a live lease) and does nothing.
"""

from __future__ import annotations

from taskiq import AsyncBroker, InMemoryBroker
from taskiq_redis import RedisStreamBroker

from dashtam.core.config import Settings

QUEUE_NAME = "dashtam:jobs"
CONSUMER_GROUP = "dashtam-workers"


def is_embedded(settings: Settings) -> bool:
    """Jobs run inside the API process (no Redis configured)."""
    return not settings.redis_url


def create_broker(settings: Settings) -> AsyncBroker:
    """The broker for these settings (not started).

    Embedded: an `InMemoryBroker` running tasks on the API's event loop. Production: a
    `RedisStreamBroker` shared by API replicas (which only enqueue) and workers.
    """
    if is_embedded(settings):
        # await_inplace=False: a kick returns at once and the job runs as a loop task.
        return InMemoryBroker(max_async_tasks=settings.worker_concurrency)
    assert settings.redis_url is not None
    return RedisStreamBroker(
        settings.redis_url,
        queue_name=QUEUE_NAME,
        consumer_group_name=CONSUMER_GROUP,
        idle_timeout=settings.job_redelivery_idle_seconds * 1000,
        # A worker killed while holding the autoclaim lock must not block the others forever.
        unacknowledged_lock_timeout=30,
        max_connection_pool_size=settings.worker_concurrency + 4,
        # Bound the stream: acknowledged messages are not needed after a while.
        maxlen=100_000,
    )
