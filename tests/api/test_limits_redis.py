"""Rate limits shared through Redis: two real web processes (uvicorn) against one Redis give a key
exactly its limit in total, then 429; with Redis down they let requests through and say so in the log."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import update

from app.api import limits
from app.api.limits import RedisLimiter
from app.config import Settings
from app.errors import RateLimited
from app.models import ApiKey
from tests.factories import make_account, make_api_key
from tests.processes import Processes, free_port, wait_for
from tests.services import private_redis  # noqa: F401  (fixture)

LIMIT = 7


def test_two_web_processes_share_one_budget_per_key(settings, db, tmp_path, private_redis):  # noqa: F811
    account = make_account(db)
    key, other = make_api_key(db, account), make_api_key(db, account)
    db.execute(update(ApiKey).values(rate_limit_per_min=LIMIT))
    db.commit()
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_SECRET_KEY": settings.secret_key, "STUDIO_REDIS_URL": private_redis.url, "HF_HUB_OFFLINE": "1",
           "STUDIO_LOG_LEVEL": "WARNING"}
    logs = tmp_path / "logs"
    logs.mkdir()
    web = Processes(env, logs)
    ports = [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            web.start(f"web{i}", "serve", "--port", str(port))
        for port in ports:
            wait_for(lambda port=port: _up(port), 60, f"the web process on {port}", log=logs / "web0.log")
        headers = {"Authorization": f"Bearer {key}"}

        def get(i: int) -> int:
            return httpx.get(f"http://127.0.0.1:{ports[i % 2]}/v1/models", headers=headers, timeout=10).status_code

        with ThreadPoolExecutor(4) as pool:  # concurrently, alternating between the two processes
            codes = list(pool.map(get, range(3 * LIMIT)))
        assert sorted(codes) == [200] * LIMIT + [429] * (2 * LIMIT), codes
        assert 429 in codes[0::2] and 429 in codes[1::2]  # both processes refuse once the shared budget is spent
        r = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/models", headers=headers, timeout=10)
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
        assert httpx.get(f"http://127.0.0.1:{ports[1]}/v1/models", timeout=10,
                         headers={"Authorization": f"Bearer {other}"}).status_code == 200  # another key, its own budget

        private_redis.stop()  # fail open: requests pass, each process logs why
        assert get(0) == 200 and get(1) == 200
        wait_for(lambda: "rate limits are not enforced" in (logs / "web0.log").read_text(), 10,
                 "the fail-open warning", log=logs / "web0.log")
    finally:
        web.stop()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_redis_url_defaults_to_a_redis_broker(monkeypatch, tmp_path):
    for name in ("STUDIO_REDIS_URL", "STUDIO_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    assert Settings(data_dir=tmp_path).redis_url == ""  # embedded: limits in memory
    assert Settings(data_dir=tmp_path, broker_url="redis://r:6379/1").redis_url == "redis://r:6379/1"
    assert Settings(data_dir=tmp_path, broker_url="redis://r:6379/1", redis_url="redis://s/2").redis_url == "redis://s/2"


def test_the_redis_window_slides_and_fails_open(private_redis, caplog, monkeypatch):  # noqa: F811
    monkeypatch.setattr(limits, "DOWN_PAUSE_S", 0.3)
    limiter = RedisLimiter(private_redis.url)
    key = ApiKey(key_hash="k" * 64, rate_limit_per_min=2)
    limiter.check(key)
    limiter.check(key)
    with pytest.raises(RateLimited) as refused:
        limiter.check(key)
    assert 1 <= refused.value.details["retry_after_s"] <= 60
    # age the window by moving both hits a minute back: the next request is counted again
    import redis

    client = redis.Redis.from_url(private_redis.url)
    name = "studio:ratelimit:" + "k" * 64
    for member, score in client.zrange(name, 0, -1, withscores=True):
        client.zadd(name, {member: score - 61})
    limiter.check(key)
    assert client.zcard(name) == 1
    private_redis.stop()
    limiter.check(key)  # no Redis: let through, with a warning
    assert "rate limits are not enforced" in caplog.text
    private_redis.start()  # an empty Redis (no persistence); asked again once the pause is over
    limiter.check(key)
    assert client.zcard(name) == 0  # within the pause: not asked
    time.sleep(0.4)
    limiter.check(key)
    assert client.zcard(name) == 1
