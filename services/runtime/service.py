"""Running one service as a process: logging, pid file, signals, the bus.

    burst service NAME ──▶ run(NAME, build) ──▶ bus.start() ──▶ write run/NAME.pid ──▶ wait
                                                                   SIGTERM/SIGINT ──▶ stop

The pid file appears only once the service is consuming, so `burst up -d`
can wait for it; it is removed on a clean stop. Each service's command line
is a click command, run by `burst service NAME` and `python -m services.NAME`
alike through command_main().
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import click
from prometheus_client import REGISTRY

from . import metrics, security, tracing
from .bus import BrokerUnavailable, Bus, QueueInUse, Subscription, connect
from .config import PoolConfig, Settings, load_pool_config
from .queuestats import QueueStats


class Service(Protocol):
    def subscriptions(self) -> list[Subscription]: ...

    def started(self) -> None:
        """Called once the bus is consuming: start timers here."""

    def stopping(self) -> None: ...

    # Optional: `collector()`, a Prometheus collector of the service's own state (service
    # objects are built many times in tests: only run() registers it, once per process).


def setup_logging(service: str, level: str | None = None) -> None:
    level = level or os.environ.get("BURST_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s service={service} level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def pid_file(settings: Settings, name: str) -> Path:
    return settings.path("run", f"{name}.pid")


def service_trust(settings: Settings, name: str) -> dict[str, Any]:
    """A service signs as service:<name> and checks every signature with the pool key (made
    on first use: `burst up` and every service on one state dir share it)."""
    pool_key = security.load_pool_key(security.pool_key_path(settings.state_dir), create=True)
    verifier = security.Verifier(pool_key)
    return {"signer": verifier.signer_for(security.service(name)), "verifier": verifier}


def run(name: str, build: Callable[[Settings, Bus], Service], *,
        settings: Settings | None = None, instance: str | None = None,
        trust: dict[str, Any] | None = None, serve_metrics: bool = True) -> int:
    """Run a service until SIGTERM/SIGINT; returns the process exit code.

    `trust` is the bus's signer and verifier (security.py); a service's by default. Its
    spans go where tracing.export says, its metrics to /metrics (unless `serve_metrics` is
    false: pilots, which are no service of the pool's own).
    """
    settings = settings or Settings.from_env()
    setup_logging(instance or name)
    log = logging.getLogger(f"burst.{name}")
    tracing.setup(name, instance or name)
    tracing.export(settings.state_dir)  # a pilot may have started it before it knew where
    tracing.store_at(settings.state_dir)
    try:
        trust = trust if trust is not None else service_trust(settings, instance or name)
        served = start_metrics(settings, instance or name) if serve_metrics else None
    except (security.AuthError, OSError) as exc:
        print(f"burst {name}: {exc}", file=sys.stderr)
        return 1
    bus = connect(settings, instance or name, **trust)
    service = build(settings, bus)
    for sub in service.subscriptions():
        bus.subscribe(sub)
    if served is not None:
        _register_collectors(settings, service)
    try:
        bus.start()
    except BrokerUnavailable as exc:
        print(f"burst {name}: {exc}", file=sys.stderr)
        return 3
    except QueueInUse as exc:
        print(f"burst {name}: another {instance or name} is already running on this "
              f"namespace ({exc}); stop it first", file=sys.stderr)
        return 3
    done = threading.Event()
    if hasattr(service, "request_stop"):  # a service that may end by itself (a retiring pilot)
        service.request_stop = done.set
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    bus.call_soon_threadsafe(service.started)
    pid_path = pid_file(settings, instance or name)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(f"{os.getpid()}\n")
    log.info("event=service_started service=%s pid=%d namespace=%s metrics=%s",
             instance or name, os.getpid(), settings.namespace,
             served.url if served is not None else "")
    try:
        done.wait()
    finally:
        log.info("event=service_stopping service=%s", instance or name)
        service.stopping()
        bus.stop()
        if served is not None:
            served.close()
        tracing.shutdown()
        if pid_path.exists() and pid_path.read_text().strip() == str(os.getpid()):
            pid_path.unlink()
    return 0


def start_metrics(settings: Settings, instance: str) -> metrics.Served:
    """/metrics on the port the configuration gives `instance`; OSError (one line naming the
    setting) when it is taken."""
    timers = load_pool_config(settings.config_path).services
    port = metrics.port_for(instance, timers.metrics_port_base, timers.metrics_ports)
    try:
        return metrics.serve(settings.state_dir, instance, timers.metrics_host, port)
    except OSError as exc:
        raise OSError(f"cannot serve /metrics on {timers.metrics_host}:{port}: "
                      f"{exc.strerror}; set [services] metrics_port_base or metrics_ports "
                      "in BURST_CONFIG (0 takes any free port)") from None


def _register_collectors(settings: Settings, service: Service) -> None:
    REGISTRY.register(QueueStats(settings, service.subscriptions()))
    collector = getattr(service, "collector", None)
    if collector is not None:
        REGISTRY.register(collector())


def pool_config(settings: Settings):
    return load_pool_config(settings.config_path)


HELP = {"help_option_names": ["-h", "--help"]}


def main_for(command: click.Command) -> Callable[[list[str] | None], int]:
    """The `main(argv=None) -> exit code` of a service package (`__main__.py`)."""
    return functools.partial(command_main, command)


def command_main(command: click.Command, argv: list[str] | None = None) -> int:
    """Run a service's click command, named after the service, as `burst service NAME`;
    return its exit code (2 and the usage on a bad option, 0 after --help)."""
    try:
        code = command.main(args=argv, prog_name=f"burst service {command.name}",
                            standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return code or 0


def named_command(kind: str, build: Callable[[str, Settings, PoolConfig, Bus], Service],
                  help: str) -> click.Command:
    """`burst service KIND [--name NAME]` for services that can run as several instances.

    The instance with the configured name is KIND (pid file run/KIND.pid, what
    `burst up` manages); others are KIND-NAME.
    """

    @click.command(kind, context_settings=HELP, help=help)
    @click.option("--name", default=None, metavar="NAME",
                  help=f"{kind} name (default: [services] {kind}_name of BURST_CONFIG)")
    def command(name: str | None) -> int:
        settings = Settings.from_env()
        pool = pool_config(settings)
        default = getattr(pool.services, f"{kind}_name")
        name = name or default
        instance = kind if name == default else f"{kind}-{name}"
        return run(kind, lambda s, bus: build(name, s, pool, bus), settings=settings,
                   instance=instance)

    return command
