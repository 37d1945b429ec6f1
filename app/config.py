"""Studio settings: the one place where environment variables are read (prefix STUDIO_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", env_file=".env", extra="ignore")

    # Everything the embedded default writes (database, broker, artifacts, models) lives here.
    data_dir: Path = Path("data")
    # Empty means: a SQLite file under data_dir. Postgres: postgresql+psycopg://user@host/db
    database_url: str = ""
    # Empty means: kombu's SQLAlchemy transport on a SQLite file under data_dir (no service).
    broker_url: str = ""
    # Redis for what every web process must share (API rate limits). Empty means: the broker's URL
    # when the broker is Redis (redis:// or rediss://), else none (limits kept per process).
    redis_url: str = ""
    # Empty means: data_dir/artifacts.
    artifact_dir: Path | None = None
    # Where artifacts live: empty for the local directory above (the embedded default), or an
    # S3-compatible bucket, s3://bucket/prefix (see docs/operations.md, "Storage").
    artifact_url: str = ""
    # The bucket's endpoint (MinIO: http://minio:9000; empty for AWS), region and credentials;
    # empty credentials: boto3's usual chain (AWS_ACCESS_KEY_ID..., ~/.aws, instance role).
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Downloads from a bucket: redirect the browser/client to a pre-signed URL valid this long
    # (files only; directories are always streamed as a zip) instead of streaming them through.
    download_redirect: bool = False
    presign_expiry_s: int = 300
    # A worker's scratch directory when the store is a bucket: inputs are downloaded here and
    # outputs uploaded from here. Empty means: data_dir/work.
    work_dir: Path | None = None
    # Retention: checkpoints kept per finished run (newest first; 0 keeps all) and merged models
    # kept per team (built on demand and cached; the oldest built is evicted first).
    keep_checkpoints: int = Field(0, ge=0)
    keep_merged: int = Field(3, ge=1)
    # Where base models live as safetensors directories (the built-in one is converted here).
    model_dir: Path | None = None
    # Signs session cookies and CSRF tokens. Empty in development: a random key is generated
    # and kept in data_dir/secret_key so sessions survive restarts.
    secret_key: str = ""
    # Cookies only over HTTPS; turn on behind TLS.
    secure_cookies: bool = False
    session_max_age_s: int = 14 * 24 * 3600
    # Upload limits.
    max_upload_bytes: int = 2 * 1024**3
    max_line_bytes: int = 1024**2
    # Local model directories may only hold safetensors unless an admin allows pickled weights.
    allow_unsafe_weights: bool = False
    # A run whose lease heartbeat is older than this lost its worker: the reconciler queues it
    # again. The lease is renewed every 5 s (every timeout/4 if shorter) by a thread of the
    # worker, not at step boundaries, so a long step never looks like a lost worker. A killed
    # worker's run is queued again within heartbeat_timeout_s + reconcile_every_s (25 s).
    heartbeat_timeout_s: int = 20
    # A job on several devices: how long a rank waits in a collective (all-reduce, barrier) for
    # the others before it fails; bounds a hang on a stuck rank (a killed one ends the job at once).
    dist_timeout_s: int = Field(300, ge=10)
    max_run_attempts: int = Field(3, validation_alias=AliasChoices(
        "STUDIO_MAX_RUN_ATTEMPTS", "STUDIO_MAX_JOB_ATTEMPTS", "max_run_attempts"))  # the old name still read
    # The reconciler (a thread in every worker) runs this often; a queued run still waiting this
    # long while a training worker is idle lost its broker message and is enqueued again.
    reconcile_every_s: float = 5.0
    requeue_after_s: float = 60.0
    # How much memory this deployment's workers have, for "will it fit" before queueing.
    worker_device: str = Field(default="auto", description="auto | cpu | cuda:<GiB>")
    # Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU) in training runs on CUDA workers where the
    # liger-kernel package is installed (pip install '.[gpu]'); off until bench/gpu.py shows a gain.
    liger_kernels: bool = False
    # How many devices this worker drives (STUDIO_WORKER_DEVICES). Empty: every GPU it sees
    # (torch.cuda.device_count()), or 1 on a CPU. On a GPU host it caps that count; on a CPU it is
    # the number of gloo processes a run may use. The train worker runs that many runs at once.
    worker_devices: int | None = Field(None, ge=1, le=64)
    log_level: str = "INFO"
    # The inference process (`studio inference`) that serves chat completions; the web only
    # talks to it over HTTP, so it never loads a model itself.
    inference_url: str = "http://127.0.0.1:8001"
    # Most fine-tuned adapters kept loaded on one base model by the inference process.
    inference_max_adapters: int = 8
    # What generates in the inference process: "transformers" (CPU or GPU, batched by the studio),
    # "llamacpp" (CPU hosts with llama-cpp-python: faster per stream, GGUF files written once),
    # "vllm" (GPU hosts with vLLM installed: continuous batching, multi-LoRA), or "auto":
    # llamacpp on a host without a GPU where llama-cpp-python is installed, else transformers
    # (docs/api.md, docs/operations.md).
    inference_backend: Literal["auto", "transformers", "llamacpp", "vllm"] = "transformers"
    # Most requests the inference process answers in one batch (same sampling settings, any adapters).
    inference_max_batch: int = Field(8, ge=1, le=256)
    # llama.cpp backend: memory (GiB) one loaded model's KV cache may take (STUDIO_INFERENCE_KV_GB).
    # It holds as many concurrent sequences of the model's context as fit, up to the batch above.
    inference_kv_gb: float = Field(2.0, gt=0, le=1024)
    # llama.cpp backend: disk (GiB) the GGUF files written into STUDIO_WORK_DIR/llamacpp may take
    # (STUDIO_LLAMACPP_CACHE_GB); the least recently used go first, a loaded model's never.
    llamacpp_cache_gb: float = Field(20.0, gt=0)
    # CPU cores the inference process keeps for itself while a run trains on the same host
    # (STUDIO_INFERENCE_CORES). Empty: half the cores, at least 1. `studio up` gives the train
    # worker the other cores (OMP_NUM_THREADS), so the two never claim the same ones; with no
    # run training here the inference process uses every core.
    inference_cores: int | None = Field(None, ge=1, le=1024)
    # JSON request bodies larger than this are refused with 413 (uploads: max_upload_bytes).
    max_json_bytes: int = 1024**2
    # A team may have at most this many runs queued or running at once (sweeps wait their turn).
    max_active_runs_per_team: int = Field(20, validation_alias=AliasChoices(
        "STUDIO_MAX_ACTIVE_RUNS_PER_TEAM", "STUDIO_MAX_ACTIVE_JOBS_PER_TEAM", "max_active_runs_per_team"))
    # End-of-run evaluation: how many eval prompts get base and fine-tuned generations, and how long.
    eval_samples: int = 8
    eval_max_new_tokens: int = 96
    # Optional LLM-as-judge: an OpenAI-compatible endpoint (the studio's own /v1 included).
    # Empty base URL: no automatic judging.
    judge_base_url: str = ""
    judge_model: str = ""
    judge_api_key: str = ""
    judge_timeout_s: float = 60.0
    # The address people reach the studio at (https://studio.example.com): links in webhook
    # payloads and e-mails are made absolute with it. Empty: links are paths (/runs/12).
    public_url: str = ""
    # Notifications (docs/notifications.md). A webhook call that fails (no answer, or not 2xx) is
    # tried again after backoff_s, then twice that, and so on, up to max_attempts tries in all.
    webhook_timeout_s: float = Field(10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(8, ge=1, le=20)
    webhook_backoff_s: float = Field(15.0, ge=0)
    # Webhook targets: empty allows any http(s) host; else a comma-separated list of host names,
    # "*.example.com" suffixes or IP networks (10.0.0.0/8) that a webhook may call.
    webhook_allowed_hosts: str = ""
    # Refuse targets that resolve to loopback or private addresses (the studio's own network).
    # Link-local addresses (cloud metadata, 169.254.169.254) are always refused.
    webhook_block_private: bool = False
    # E-mail to the person who started a run, when it ends. Empty host: no e-mail is sent.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(15.0, gt=0)

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'studio.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if not self.redis_url and self.broker_url.startswith(("redis://", "rediss://")):
            self.redis_url = self.broker_url
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
        if self.model_dir is None:
            self.model_dir = self.data_dir / "models"
        if self.work_dir is None:
            self.work_dir = self.data_dir / "work"
        if self.artifact_url and not self.artifact_url.startswith("s3://"):
            raise ValueError(f"STUDIO_ARTIFACT_URL must be empty (the local directory STUDIO_ARTIFACT_DIR) or "
                             f"s3://bucket/prefix, not {self.artifact_url!r}")
        return self

    @property
    def remote_artifacts(self) -> bool:
        return self.artifact_url.startswith("s3://")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.artifact_dir, self.model_dir):
            d.mkdir(parents=True, exist_ok=True)

    def inference_cores_shared(self, cores: int) -> int:
        """Cores the inference process keeps while a run trains on this host (of `cores`)."""
        if cores <= 1:
            return 1
        return min(self.inference_cores or max(1, cores // 2), cores - 1)

    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        import secrets

        path = self.data_dir / "secret_key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
