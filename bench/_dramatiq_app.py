"""The dramatiq side of bench/queue_throughput.py: RedisBroker on BENCH_REDIS_URL, a no-op actor.

Run by ``dramatiq _dramatiq_app --processes 2 --threads 8`` (bench/ on PYTHONPATH).
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop() -> None:
    return None
