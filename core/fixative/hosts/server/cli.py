"""``fixative serve``: run the local engine that editor plug-ins and pipelines submit jobs to;
``fixative ui``: open its web page (starting the engine first when none runs)."""

from __future__ import annotations

import argparse
import logging
import sys

from ...fixative_client import DEFAULT_PORT
from ...options import PRECISIONS, ProtectOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the local engine for editor plug-ins and pipelines",
        description="Run the Fixative engine on this machine. Plug-ins find it through "
        "server.json and the token in the Fixative config folder.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one, announced in server.json)",
    )
    p.add_argument(
        "--device",
        action="append",
        help="device(s) to run jobs on, one worker each: cpu (default), cuda, cuda:N, mps or auto; "
        "repeat or comma-separate for several",
    )
    precision = ProtectOptions.model_fields["dtype"]  # a job that names none gets the engine's
    p.add_argument(
        "--precision",
        default=precision.default,
        choices=PRECISIONS,
        help=f"{precision.description} (default: {precision.default})",
    )
    p.add_argument(
        "--model", action="append", help="encoder used when a job names none; repeat for an ensemble"
    )
    p.add_argument(
        "--queue", type=int, default=16, help="jobs allowed to wait before new ones get 429 (default 16)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=64.0, help="largest accepted upload (default 64 MB)"
    )
    p.add_argument(
        "--max-megapixels", type=float, default=40.0, help="largest accepted image (default 40 MP)"
    )
    p.add_argument(
        "--keep-results",
        type=float,
        default=3600.0,
        help="seconds an unfetched result is kept (default 3600)",
    )
    p.add_argument("--no-preload", action="store_true", help="do not load the default model at start")
    p.add_argument("--allow-download", action="store_true", help="let jobs fetch a hub model once")
    p.add_argument(
        "--ready-line",
        action="store_true",
        help='print one line `FIXATIVE_READY {"url": ..., "pid": ..., "version": ...}` once listening',
    )
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (prints a warning)"
    )
    p.add_argument("--stop", action="store_true", help="stop the running engine and exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)
    ui = sub.add_parser(
        "ui",
        help="open the web page: protect, compare and check in the browser",
        description="Start (or reuse) the local engine and open its page in the browser at a one-time link.",
    )
    ui.add_argument("--no-open", action="store_true", help="print the one-time link instead of opening it")
    ui.set_defaults(func=cmd_ui)


def _devices(values: list[str] | None) -> list[str]:
    """The devices to serve, each resolved (``auto`` -> the fastest present) and checked."""
    from ...errors import BadParameterError
    from ...models import resolve_device

    names = [part.strip() for value in (values or ["cpu"]) for part in value.split(",") if part.strip()]
    devices: list[str] = []
    for name in names:
        device = resolve_device(name)
        label = str(device) if device.index is not None or device.type != "cuda" else "cuda:0"
        if label in devices:
            raise BadParameterError(f"device {label} is given twice")
        devices.append(label)
    return devices


def cmd_serve(args: argparse.Namespace) -> int:
    from ...errors import BadParameterError
    from .jobs import ServerSettings
    from .runtime import serve, stop_running

    if args.stop:
        print(stop_running())
        return 0
    if not 0 <= args.port <= 65535:
        raise BadParameterError(f"--port must be between 0 and 65535, got {args.port}")
    if args.queue < 1 or args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise BadParameterError("--queue, --max-upload-mb and --max-megapixels must be positive")
    settings = ServerSettings(
        devices=_devices(args.device),
        dtype=args.precision,
        models=args.model or None,
        max_queue=args.queue,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1e6),
        result_ttl=args.keep_results,
        allow_download=args.allow_download,
        preload=not args.no_preload,
    )
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return serve(
        settings,
        host=args.host,
        port=args.port,
        ready_line=args.ready_line,
        allow_remote=args.allow_remote,
        log_level=args.log_level,
    )


def cmd_ui(args: argparse.Namespace) -> int:
    """The one-time link works once and for two minutes; the page keeps a session cookie after that."""
    import webbrowser

    from ...fixative_client import ensure_engine, read_engine_command
    from ..install.editor import record_engine_command

    if read_engine_command() is None:
        record_engine_command()  # this very Python starts the engine, as the editor installers record
    client = ensure_engine()
    url = client._request("POST", "/ui/ticket")["url"]
    if args.no_open or not webbrowser.open(url):
        print(url)
    else:
        print(f"opened the Fixative page in your browser (engine at {client.url})", file=sys.stderr)
    return 0
