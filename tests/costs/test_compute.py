"""The cost computations: device types, a run's measured cost, the estimate's cost, return on
investment, and the estimator's table of the usual cases. No database."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from app.costs import catalog, reference, roi, views
from app.costs.service import Prices, estimate_cost, run_cost
from app.models import RunStatus, utcnow


def table(**custom) -> Prices:
    per_hour = {d.key: d.default_price for d in catalog.DEVICE_TYPES}
    per_hour.update(custom)
    return Prices(currency="EUR", per_hour=per_hour, custom=set(custom))


@pytest.mark.parametrize(("name", "kind", "key"), [
    ("NVIDIA H100 80GB HBM3", "cuda", "h100"), ("NVIDIA H200", "cuda", "h200"),
    ("NVIDIA A100-SXM4-80GB", "cuda", "a100_80"), ("NVIDIA A100-SXM4-40GB", "cuda", "a100_40"),
    ("NVIDIA A100-PCIE-40GB", "cuda", "a100_40"), ("NVIDIA L40S", "cuda", "l40s"), ("NVIDIA A10G", "cuda", "a10g"),
    ("NVIDIA L4", "cuda", "l4"), ("Tesla T4", "cuda", "t4"), ("NVIDIA GeForce RTX 4090", "cuda", "rtx4090"),
    ("NVIDIA RTX A6000", "cuda", "gpu_other"), ("AMD EPYC 9654", "cpu", "cpu"), ("", None, "cpu"),
])
def test_device_names_map_to_their_type(name, kind, key):
    assert catalog.classify(name, kind) == key


def _run(**values):
    now = utcnow()
    base = dict(status=RunStatus.succeeded, started_at=now - timedelta(hours=2), finished_at=now, heartbeat_at=now,
                worker_id="gpu-1", device_ids=[0, 1, 2, 3], config={"devices": 4}, estimate=None)
    return SimpleNamespace(**{**base, **values})


def test_a_runs_cost_is_hours_times_devices_times_the_teams_price():
    workers = {"gpu-1": SimpleNamespace(device_name="NVIDIA H100 80GB HBM3", device="cuda")}
    c = run_cost(_run(), table(h100=2.5), workers)
    assert (c.device_type, c.devices, c.measured) == ("h100", 4, True)
    assert c.hours == pytest.approx(2.0) and c.device_hours == pytest.approx(8.0)
    assert c.cost == pytest.approx(20.0) and c.currency == "EUR"


def test_a_cpu_host_counts_once_and_an_unknown_worker_falls_back_to_the_estimate():
    cpu = {"cpu-1": SimpleNamespace(device_name="", device="cpu")}
    c = run_cost(_run(worker_id="cpu-1", device_ids=[0, 1]), table(cpu=0.5), cpu)
    assert c.device_hours == pytest.approx(2.0) and c.cost == pytest.approx(1.0)
    gone = run_cost(_run(worker_id="gone", device_ids=[0],
                         estimate={"device": "NVIDIA L4", "device_kind": "cuda", "device_known": True}),
                    table(), {})
    assert gone.device_type == "l4" and gone.cost == pytest.approx(2 * catalog.BY_KEY["l4"].default_price)


def test_a_running_run_costs_so_far_and_a_queued_one_nothing():
    now = utcnow()
    running = run_cost(_run(status=RunStatus.running, finished_at=None, started_at=now - timedelta(minutes=30)),
                       table(h100=2.0), {"gpu-1": SimpleNamespace(device_name="H100", device="cuda")}, now=now)
    assert running.measured is False and running.cost == pytest.approx(0.5 * 4 * 2.0)
    assert run_cost(_run(status=RunStatus.queued, started_at=None, finished_at=None), table(), {}) is None


def test_the_estimate_costs_its_time_range():
    est = {"time_s": 3600.0, "device": "NVIDIA A100-SXM4-80GB", "device_kind": "cuda", "device_known": True,
           "devices": 2, "time_range": {"low_s": 1800.0, "likely_s": 3600.0, "high_s": 7200.0}}
    c = estimate_cost(est, table(a100_80=2.0))
    assert c["device_type"] == "a100_80" and c["devices"] == 2
    assert c["device_hours"] == pytest.approx({"low": 1.0, "likely": 2.0, "high": 4.0})
    assert c["cost"] == pytest.approx({"low": 2.0, "likely": 4.0, "high": 8.0})
    assert estimate_cost({"time_s": None}, table()) is None
    # no worker online: the device name is not a device, the kind decides
    none_online = estimate_cost({"time_s": 3600.0, "device": "no training worker online", "device_kind": "cpu",
                                 "device_known": False, "devices": 1}, table(cpu=0.3))
    assert none_online["device_type"] == "cpu" and none_online["cost"]["likely"] == pytest.approx(0.3)


def test_serving_speed_follows_memory_bandwidth_and_model_size():
    # 7B in 16 bits = 14 GB read per token; an H100's 3,350 GB/s at 60% -> ~144 tokens/s
    assert roi.serving_tokens_per_second(7e9, "h100") == pytest.approx(3350e9 * 0.6 / 14e9)
    assert roi.serving_tokens_per_second(7e9, "h100") > roi.serving_tokens_per_second(7e9, "t4")
    assert roi.serving_tokens_per_second(7e9, "h100") > roi.serving_tokens_per_second(13e9, "h100")


def test_break_even_counts_the_training_cost_against_the_saving_per_request():
    r = roi.compute(training_cost=100.0, parameters=1e9, device_type="h100", price_per_hour=3.6, currency="USD",
                    api_price_per_request=0.01, monthly_requests=1_000_000, tokens_per_answer=300,
                    measured_tokens_per_second=300.0)
    # 300 tokens at 300 tokens/s = 1 s of a $3.60/h device = $0.001; the device all month ($2,628)
    # over a million requests is $0.002628 a request: the higher counts
    assert r.cost_per_request_busy == pytest.approx(0.001)
    assert r.cost_per_request == pytest.approx(3.6 * 730 / 1_000_000)
    assert r.saving_per_request == pytest.approx(0.01 - 0.002628)
    assert r.break_even_requests == pytest.approx(100 / (0.01 - 0.002628))
    assert r.break_even_months == pytest.approx(r.break_even_requests / 1_000_000)
    assert r.pays_back is True and r.tokens_per_second_measured is True


def test_no_break_even_when_serving_costs_more_or_nothing_is_entered():
    dear = roi.compute(training_cost=100.0, parameters=70e9, device_type="t4", price_per_hour=1.0, currency="USD",
                       api_price_per_request=0.0001, monthly_requests=1000)
    assert dear.pays_back is False and dear.break_even_requests is None and dear.monthly_saving < 0
    blank = roi.compute(training_cost=100.0, parameters=1e9, device_type="h100", price_per_hour=3.0, currency="USD",
                        api_price_per_request=None, monthly_requests=None)
    assert blank.pays_back is None and blank.break_even_months is None
    assert blank.tokens_per_answer == roi.DEFAULT_TOKENS_PER_ANSWER and blank.tokens_per_second_measured is False


def test_the_reference_table_is_the_estimators_own_answer():
    cases = {(c.size, c.method): c for c in reference.table()}
    assert set(cases) == {(s, m) for s in ("7B", "13B", "70B") for m in ("full", "lora", "qlora")}
    # memory falls with the method and rises with the size
    for size in ("7B", "13B", "70B"):
        assert cases[size, "full"].memory_one_gpu_gb > cases[size, "lora"].memory_one_gpu_gb > cases[size, "qlora"].memory_one_gpu_gb
    assert cases["7B", "qlora"].memory_one_gpu_gb < cases["13B", "qlora"].memory_one_gpu_gb < cases["70B", "qlora"].memory_one_gpu_gb
    # the published 70B figures: QLoRA about 45 GB on one GPU, LoRA about 160 GB, full beyond 8 x 80 GB
    assert cases["70B", "qlora"].memory_one_gpu_gb == pytest.approx(45, rel=0.25) and cases["70B", "qlora"].devices == 1
    assert cases["70B", "lora"].memory_one_gpu_gb == pytest.approx(160, rel=0.25) and cases["70B", "lora"].devices is None
    assert cases["70B", "full"].devices is None and cases["70B", "full"].gpu_hours is None
    assert cases["13B", "full"].devices == 2 and cases["13B", "full"].per_device_gb <= 80 * 0.95
    # GPU-hours: the same tokens cost more hours on a bigger model, and full costs more than LoRA
    assert cases["7B", "lora"].gpu_hours < cases["13B", "lora"].gpu_hours < cases["70B", "qlora"].gpu_hours
    assert cases["7B", "full"].gpu_hours > cases["7B", "lora"].gpu_hours
    assert cases["7B", "lora"].cost(2.0) == pytest.approx(cases["7B", "lora"].gpu_hours * 2.0)


def test_money_and_hours_read_plainly():
    assert views.money(1234.4, "USD") == "$1,234"
    assert views.money(12.5, "EUR") == "€12.50" and views.money(0.0012, "USD") == "$0.0012"
    assert views.money(3, "CHF") == "3.00 CHF" and views.money(None) == "—" and views.money(-2, "USD") == "-$2.00"
    assert views.money(5e-8, "USD") == "under $0.0001"
    assert views.hours(0.004) == "under 0.01" and views.hours(2.345) == "2.3" and views.hours(123.4) == "123"


def test_break_even_reads_as_a_person_says_it():
    assert views.requests(56.1) == "57" and views.requests(1234567.2) == "1,234,568"
    assert views.period(3.5) == "3.5 months" and views.period(1) == "1.0 month"
    assert views.period(0.5) == "15 days" and views.period(2.8e-5) == "under a day" and views.period(None) == "—"
