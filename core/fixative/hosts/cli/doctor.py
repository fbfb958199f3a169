"""``fixative doctor``: what a user needs to know to get going, in plain words, with the fix for each problem.

Python, torch and the device (CUDA / MPS / CPU with memory), the encoders found and where, the engine's
state, and the editor plug-ins installed (and whether their copy of the client is this version's). Exit 0
when nothing blocks protecting, 1 when something does (each such line starts with "problem:").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Finding:
    topic: str
    state: str
    fix: str | None = None  # set only for a problem
    blocking: bool = False
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        head = "problem: " if self.fix else ""
        tail = f"\n    fix: {self.fix}" if self.fix else ""
        return f"{self.topic:<9} {head}{self.state}{tail}"


def python_finding() -> Finding:
    version = platform.python_version()
    return Finding("python", f"{version} at {sys.executable}", details={"version": version})


def torch_findings() -> list[Finding]:
    try:
        import torch

        from ...models.base import native_bf16
    except Exception as exc:  # not installed, or a broken wheel
        return [
            Finding(
                "torch",
                f"cannot be imported ({type(exc).__name__}: {str(exc)[:120]})",
                fix="pip install torch torchvision (see README's set-up command)",
                blocking=True,
            )
        ]
    found = [Finding("torch", torch.__version__, details={"version": torch.__version__})]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append(
                Finding(
                    "device",
                    f"cuda:{index} {props.name}, {props.total_memory / 2**30:.0f} GB (used by default)",
                    details={"device": f"cuda:{index}", "memory_gb": round(props.total_memory / 2**30, 1)},
                )
            )
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append(Finding("device", "Apple GPU (mps), used by default", details={"device": "mps"}))
    cores = os.cpu_count() or 1
    memory = _memory_gb()
    memory_text = f", {memory:.0f} GB memory" if memory else ""
    bf16 = native_bf16()
    bf16_text = ", bf16 in hardware (protections use it: half the time)" if bf16 else ""
    found.append(
        Finding(
            "device",
            f"CPU, {cores} cores{memory_text}{bf16_text}"
            + ("" if len(found) > 1 else " (no GPU found: protecting is slower)"),
            details={"device": "cpu", "cores": cores, "memory_gb": memory, "native_bf16": bf16},
        )
    )
    return found


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def encoder_findings() -> list[Finding]:
    from ...models import find_models, search_path
    from ...models.discovery import GET_COMMAND
    from ...plugins import hooks

    entries = find_models(hooks())
    if not entries:
        searched = ", ".join(str(p) for p in search_path()[:3])
        return [
            Finding(
                "encoders",
                f"none found (searched {searched}, …: see `fixative models`)",
                fix=f"`{GET_COMMAND}` (5.4 MB, checked), or set FIXATIVE_MODELS to a folder with a VAE",
                blocking=True,
            )
        ]
    return [
        Finding(
            "encoders", f"{e.family} ({e.latent_channels} ch, {e.kind}) at {e.source}", details=e.as_dict()
        )
        for e in entries
    ]


def engine_finding() -> Finding:
    from ...fixative_client import EngineClient, EngineError, config_dir, read_server_info

    info = read_server_info()  # a record of a dead engine is removed here
    if info is None:
        return Finding(
            "engine",
            f"not running (config folder {config_dir()}); the plug-ins start it when needed, "
            "or run `fixative serve`",
        )
    try:
        client = EngineClient.discover()
        health = client.health() if client is not None else None
    except EngineError as exc:
        health, client = None, None
        reason = str(exc)
    else:
        reason = "it does not prove it holds this user's token"
    if health is None:
        return Finding(
            "engine",
            f"something answers at {info.get('url')} but {reason}",
            fix="`fixative serve --stop`, then start it again with `fixative serve`",
        )
    devices = ", ".join(health.get("devices", []))
    return Finding(
        "engine",
        f"running at {client.url}, version {health.get('version')}, devices {devices}",
        details={"url": client.url, "version": health.get("version")},
    )


def plugin_findings() -> list[Finding]:
    """Each editor's installed copy, and whether its client is this version's (same bytes)."""
    from ..install import editor, gimp, krita

    places = [
        ("krita", krita.krita_resource_dir() / "pykrita" / krita.PLUGIN_NAME, "fixative install krita"),
        ("gimp", gimp.gimp_plugins_dir() / gimp.PLUGIN_NAME, "fixative install gimp"),
    ]
    comfy = os.environ.get("COMFYUI_DIR") or os.environ.get("COMFYUI_PATH")
    if comfy:
        places.append(
            ("comfyui", Path(comfy) / "custom_nodes" / "fixative", f"fixative install comfyui {comfy}")
        )
    ours = editor.CLIENT.read_bytes() if editor.CLIENT.is_file() else b""
    found = []
    for name, folder, command in places:
        if not folder.exists():
            found.append(Finding("plug-in", f"{name}: not installed (`{command}` installs it)"))
            continue
        client = folder / editor.CLIENT_FILE
        if name == "comfyui" or (client.is_file() and client.read_bytes() == ours):
            found.append(Finding("plug-in", f"{name}: installed at {folder}, up to date"))
        else:
            found.append(
                Finding(
                    "plug-in",
                    f"{name}: installed at {folder}, from another Fixative version",
                    fix=f"`{command}` (replaces it with this version's)",
                )
            )
    return found


def diagnose() -> list[Finding]:
    findings = [python_finding(), *torch_findings()]
    if not any(f.blocking for f in findings):
        findings += encoder_findings()
    findings.append(engine_finding())
    findings += plugin_findings()
    return findings


def run(args: argparse.Namespace) -> int:
    findings = diagnose()
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2, default=str))
    else:
        for finding in findings:
            print(finding.line())
        problems = sum(1 for f in findings if f.fix)
        print(
            "all good: ready to protect" if not problems else f"{problems} problem(s); the fix is under each"
        )
    return 1 if any(f.blocking for f in findings) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what Fixative finds on this machine, and the fix for each problem")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=run)
