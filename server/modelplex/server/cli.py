"""``modelplex serve``: run the server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelplex.errors import ConfigError, ModelplexError
from modelplex.server.app import ModelServer
from modelplex.server.config import Config, load_config
from modelplex.server.logs import configure_logging

log = logging.getLogger("modelplex")

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelplex serve",
        description="Serve models over gRPC. With no --config, serves the built-in demo profile "
        "(small models with random weights).",
    )
    p.add_argument("--config", type=Path, help="TOML config file (see docs/configuration.md)")
    p.add_argument("--host", help="interface to listen on (server.host)")
    p.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (server.port)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SPEC",
        help="serve this spec instead of the config's models (repeatable)",
    )
    p.add_argument("--weights", help='with --model: "pretrained", "random" or a checkpoint path')
    p.add_argument("--device", action="append", help="with --model: a device (repeatable; default auto)")
    p.add_argument("--allow-download", action="store_true", default=None, help="download missing pretrained weights")
    p.add_argument("--strict-plugins", action="store_true", default=None, help="refuse to start if a plugin fails")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {"server": {}, "plugins": {}}
    for key in ("host", "port", "allow_download", "log_level"):
        value = getattr(args, key)
        if value is not None:
            overrides["server"][key] = value
    if args.strict_plugins:
        overrides["plugins"]["strict"] = True
    if (args.weights or args.device) and not args.model:
        raise ConfigError("--weights and --device apply to --model; name the spec with --model")
    if args.model:
        model: dict[str, Any] = {}
        if args.weights:
            model["weights"] = args.weights
        if args.device:
            model["devices"] = args.device
        overrides["models"] = [{"spec": spec, **model} for spec in args.model]
    return load_config(args.config, overrides=overrides)


async def serve(config: Config) -> bool:
    """Run until SIGINT or SIGTERM (SIGHUP reloads tokens and certificates). Returns whether
    model work was still running when the shutdown bound passed."""
    server = ModelServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    try:
        # A signal while the models load stops the start-up too, not only a running server.
        starting = asyncio.ensure_future(server.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("interrupted while loading models; shutting down")
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return server.abandoned_work
        stopping.cancel()
        port = starting.result()
        names = ", ".join(m.name for m in server.registry.list()) or "none"
        print(f"modelplex serving on {config.server.host}:{port} (models: {names})", flush=True)
        await stop.wait()
        log.info("shutting down (grace period %.1fs)", config.server.grace_period_s)
    finally:
        await server.stop()
    return server.abandoned_work


def main(argv: Sequence[str] | None = None) -> int:
    """Run `modelplex serve`; once the server has run, this ends the process (see below)."""
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ModelplexError as e:
        print(f"modelplex: {e}", file=sys.stderr)
        return 2
    configure_logging(config.server.log_level, config.server.log_format)
    try:
        asyncio.run(serve(config))
    except ModelplexError as e:
        print(f"modelplex: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"modelplex: {e}", file=sys.stderr)
        return 1
    # Leave now rather than through the interpreter's own shutdown, which tears down torch and
    # every module for seconds (measured 3-5 s, docs/reliability.md), past the shutdown bound.
    # atexit handlers still run (they clean up temporary files); threads are not joined, so a
    # plugin's forward pass still running (``abandoned``) does not hold the exit either.
    _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """Run the atexit handlers, flush, and end the process without the interpreter's teardown."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
