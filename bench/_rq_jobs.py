"""The RQ side of bench/queue_throughput.py: a no-op job (importable by `rq worker`)."""


def noop() -> None:
    return None
