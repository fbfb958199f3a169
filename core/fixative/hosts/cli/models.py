"""``fixative models`` (what encoders are found, and where) and ``fixative presets`` (the exact numbers)."""

from __future__ import annotations

import argparse
import json


def cmd_models(args: argparse.Namespace) -> int:
    from ...models import HOW_TO_GET_A_MODEL, find_models, search_path
    from ...plugins import hooks

    entries = find_models(hooks(), include_decoders=args.all)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print(HOW_TO_GET_A_MODEL)
        print("searched: " + ", ".join(str(p) for p in search_path()))
        return 1
    width = max(len(e.family) for e in entries)
    for e in entries:
        extra = "  (+decoder)" if e.decoder and e.kind != "tiny-decoder" else ""
        print(f"{e.family:<{width}}  {e.latent_channels:>3} ch  {e.kind:<12} {e.source}{extra}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from ...presets import as_table

    print(json.dumps(as_table(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list the encoders Fixative can find")
    m.add_argument("--json", action="store_true", help="as JSON")
    m.add_argument("--all", action="store_true", help="include decoder-only files")
    m.set_defaults(func=cmd_models)
    p = sub.add_parser("presets", help="print the exact numbers behind --intensity and --quality")
    p.set_defaults(func=cmd_presets)
