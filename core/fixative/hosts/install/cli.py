"""``fixative install krita|gimp|comfyui``: each host's installer registers its own sub-command here."""

from __future__ import annotations

import argparse

INSTALLERS = ("fixative.hosts.install.krita", "fixative.hosts.install.gimp", "fixative.hosts.install.comfyui")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("install", help="install a host integration (krita, gimp, comfyui)")
    hosts = parser.add_subparsers(dest="host", required=True)
    for module_name in INSTALLERS:
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(hosts)
