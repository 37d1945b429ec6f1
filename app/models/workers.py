"""Live workers: each one upserts its row every few seconds (see worker/runtime/heartbeat.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped, UTCDateTime


class Worker(Timestamped, Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # celery hostname
    queues: Mapped[str] = mapped_column(String(200), default="")
    device: Mapped[str] = mapped_column(String(64), default="cpu")  # cpu | cuda
    device_name: Mapped[str] = mapped_column(String(200), default="")
    device_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # each device's
    # How many devices of that kind this worker drives (GPUs, or gloo processes on a CPU): the claim
    # gives it a run only while that many minus those its running runs hold are enough.
    device_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    info: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
