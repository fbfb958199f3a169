"""``fixative models`` (what encoders are found and where; ``--list`` / ``--get`` the downloadable ones)
and ``fixative presets`` (the exact numbers)."""

from __future__ import annotations

import argparse
import json


def cmd_models(args: argparse.Namespace) -> int:
    if args.get:
        return cmd_get(args.get)
    if args.list:
        return cmd_list(args.json)
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


def cmd_list(as_json: bool) -> int:
    from ...models.hub import CATALOGUE, RECOMMENDED, cached_file

    rows = []
    for entry in CATALOGUE.values():
        have = all(cached_file(entry, f) is not None for f in entry.files)
        rows.append(dict(entry.as_dict(), downloaded=have))
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = " (recommended)" if row["name"] == RECOMMENDED else ""
        state = "downloaded" if row["downloaded"] else "not downloaded"
        print(
            f"{row['name']:<8} {row['size_bytes'] / 1e6:5.1f} MB  {row['licence']:<4} {state:<15} "
            f"protects against {row['protects']}{mark}"
        )
    print("get one with `fixative models --get NAME` (from the Hugging Face Hub, checked by SHA-256)")
    return 0


def cmd_get(name: str) -> int:
    from ...models.hub import get, lookup

    entry = lookup(name)  # an unknown name is refused before anything is imported or fetched
    paths = get(entry.name)
    print(f"{entry.name}: {len(paths)} file(s) checked (SHA-256) and loadable, in {paths[0].parent}")
    print("found from now on by every host; `fixative models` lists it")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from ...presets import as_table

    print(json.dumps(as_table(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list the encoders Fixative can find")
    m.add_argument("--json", action="store_true", help="as JSON")
    m.add_argument("--all", action="store_true", help="include decoder-only files")
    m.add_argument(
        "--list",
        action="store_true",
        help="encoders `--get` can download (size, licence, what they protect)",
    )
    m.add_argument(
        "--get",
        metavar="NAME",
        help="download an encoder from the Hugging Face Hub, checked (e.g. taef2)",
    )
    m.set_defaults(func=cmd_models)
    p = sub.add_parser("presets", help="print the exact numbers behind --intensity and --quality")
    p.set_defaults(func=cmd_presets)
