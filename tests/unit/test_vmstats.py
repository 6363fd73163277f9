"""VM figures are rates between two samples, not totals."""

from kimchid.model.vms import ZERO_STATS as ZERO
from kimchid.model.vmstats import rates


def test_rates_are_differences_over_time():
    prev = {"cpu_ns": 1e9, "vcpus": 2, "block_rd.bytes": 0, "block_wr.bytes": 1024,
            "net_rx.bytes": 10240, "net_tx.bytes": 0}
    cur = {"cpu_ns": 2e9, "vcpus": 2, "block_rd.bytes": 20480, "block_wr.bytes": 1024,
           "net_rx.bytes": 30720, "net_tx.bytes": 5120, "mem_total": 1000, "mem_free": 250}
    r = rates(prev, cur, 2.0)
    assert r["cpu_utilization"] == 25.0  # 1 s of CPU over 2 s on 2 vCPUs
    assert (r["io_read"], r["io_write"], r["io_throughput"]) == (10.0, 0.0, 10.0)
    assert (r["net_received"], r["net_sent"], r["net_throughput"]) == (10.0, 2.5, 12.5)
    assert r["mem_utilization"] == 75.0


def test_a_first_sample_or_counter_reset_never_gives_nonsense():
    cur = {"cpu_ns": 5e9, "vcpus": 1, "mem_current": 1000, "mem_rss": 500}
    first = rates(None, cur, 0)
    assert first["cpu_utilization"] == 0.0 and first["mem_utilization"] == 50.0
    after_restart = rates({"cpu_ns": 9e9, "vcpus": 1}, cur, 1.0)  # the counter went down
    assert after_restart["cpu_utilization"] == 0.0
    assert set(first) == set(ZERO)
