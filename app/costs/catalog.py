"""Device types the studio prices, how a worker's device name maps to one, and the default
prices. Pure Python.

The default prices are round figures of on-demand cloud rental per device and hour, in US
dollars, late 2025: a starting point only. Every team should set its own (its cloud's price,
or for its own hardware: purchase price / hours of use + power), on the team's Costs page.

A CPU worker is priced per host-hour (the whole machine, whatever number of processes a run
spreads over), a GPU per GPU-hour. ``bandwidth_gbs`` is the device's memory bandwidth (GB/s)
from the vendor's data sheet: what bounds generating one answer token at a time, and so what
the serving estimate of app/costs/roi.py uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceType:
    key: str
    label: str
    default_price: float  # per device-hour (per host-hour for cpu)
    bandwidth_gbs: float
    memory_gb: float | None = None


DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType("h200", "NVIDIA H200 (141 GB)", 3.80, 4800, 141),
    DeviceType("h100", "NVIDIA H100 (80 GB)", 2.90, 3350, 80),
    DeviceType("a100_80", "NVIDIA A100 80 GB", 1.80, 2039, 80),
    DeviceType("a100_40", "NVIDIA A100 40 GB", 1.30, 1555, 40),
    DeviceType("l40s", "NVIDIA L40S (48 GB)", 1.00, 864, 48),
    DeviceType("a10g", "NVIDIA A10G (24 GB)", 1.00, 600, 24),
    DeviceType("l4", "NVIDIA L4 (24 GB)", 0.70, 300, 24),
    DeviceType("t4", "NVIDIA T4 (16 GB)", 0.35, 320, 16),
    DeviceType("rtx4090", "NVIDIA RTX 4090 (24 GB)", 0.40, 1008, 24),
    DeviceType("gpu_other", "Other GPU", 1.00, 500, None),
    DeviceType("cpu", "CPU server (per host-hour)", 0.20, 50, None),
)
BY_KEY = {d.key: d for d in DEVICE_TYPES}
DEFAULT_CURRENCY = "USD"
CURRENCIES = ("USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "INR", "CNY")
MAX_PRICE = 10_000.0  # per device-hour: anything above is a typing mistake


def classify(device_name: str | None, kind: str | None = None) -> str:
    """The device type key of a worker's device: by its name (as torch reports it, e.g. "NVIDIA
    H100 80GB HBM3"), else by its kind (cpu | cuda)."""
    name = (device_name or "").upper().replace("-", " ")
    if kind == "cpu" or (not kind and (not name or name == "CPU")):
        return "cpu"
    if "H200" in name:
        return "h200"
    if "H100" in name:
        return "h100"
    if "A100" in name:
        return "a100_80" if "80" in name.replace("A100", "") else "a100_40"
    if "L40S" in name:
        return "l40s"
    if "A10G" in name:
        return "a10g"
    if "4090" in name:
        return "rtx4090"
    if "T4" in name.split() or "TESLA T4" in name:
        return "t4"
    if "L4" in name.split():
        return "l4"
    return "gpu_other" if kind == "cuda" or name else "cpu"


def is_per_host(key: str) -> bool:
    """CPU runs are priced per host-hour: the device count of a CPU run does not multiply it."""
    return key == "cpu"
