"""One options schema: every host derives its options from ``fixative.options``; a plugin's target kind is
made and checked through the same hooks as the built-in ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fixative
from fixative import fixative_client
from fixative.errors import BadParameterError
from fixative.hosts.cli import build_parser
from fixative.hosts.cli.arguments import Parser, add_options, values_from
from fixative.options import CLI, JobOptions, editor_choices, offered_to, option


def test_the_plugins_bundled_copy_is_the_schema():
    """Editor plug-ins fall back to the copy their client carries; it must say what the engine says."""
    assert fixative_client.BUNDLED_OPTIONS == editor_choices()
    assert fixative_client.choice_values(fixative_client.option_choices(None), "method") == [
        "style",
        "concept",
        "edit",
    ]


def test_command_line_flags_come_from_the_schema():
    parser = build_parser()
    protect = parser._subparsers._group_actions[0].choices["protect"]
    flags = {opt for action in protect._actions for opt in action.option_strings}
    for name, info in offered_to(CLI).items():
        flag = (info.json_schema_extra or {}).get("flag") or "--" + name.replace("_", "-")
        assert flag in flags, name
    args = parser.parse_args(
        ["protect", "a.png", "--method", "edit", "--steps", "3", "--model", "x", "--model", "y", "--verify"]
    )
    options = JobOptions.parse(values_from(args))
    assert (options.method, options.steps, options.models, options.check) == ("edit", 3, ["x", "y"], True)


def test_a_new_option_needs_only_its_definition():
    """What adding a field gives every derived host for free (here: a flag with its help and default)."""

    class Extended(JobOptions):
        grain: float = option(0.5, "how much grain", hosts=(CLI,), ge=0, le=1)

    parser = Parser(prog="t")
    add_options(parser, Extended)
    args = parser.parse_args(["--grain", "0.25"])
    assert Extended.parse(values_from(args)).grain == 0.25
    assert "how much grain (default: 0.5)" in parser.format_help()
    with pytest.raises(BadParameterError, match="grain"):
        Extended.parse(grain=2)


def test_bad_values_are_one_line_before_torch_loads(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    script = (
        "import sys; from fixative.hosts.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(code)\n"
    )
    for argv, wanted in (
        (["protect", str(image), "--steps", "0"], "steps"),
        (["protect", str(image), "--method", "paint"], "method"),
        (["protect", str(image), "-o", str(tmp_path / "x.gif")], "unsupported output type"),
        (["protect", str(image)], "file is empty"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and wanted in lines[0], (argv, done.stderr)
        assert done.stdout.strip() == "NO-TORCH", argv


def test_argparse_errors_are_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "fixative", "protect", "--no-such-flag", "a.png"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--help" in done.stderr


def test_protect_rejects_unknown_and_out_of_range_options(small_artwork):
    with pytest.raises(BadParameterError, match="unknown option 'stepz'"):
        fixative.protect(small_artwork, stepz=3)
    with pytest.raises(BadParameterError, match="steps"):
        fixative.protect(small_artwork, steps=0)
    with pytest.raises(BadParameterError, match="intensity"):
        fixative.protect(small_artwork, options={"intensity": "extreme"})


def test_options_json_schema_is_servable():
    schema = JobOptions.model_json_schema()
    assert schema["properties"]["method"]["enum"] == ["style", "concept", "edit"]
    json.dumps(editor_choices())  # plain JSON


def _plugin():
    import torch

    from fixative.hookspecs import hookimpl
    from fixative.targets import Target

    class Plugin:
        @hookimpl
        def fixative_make_target(self, request):
            if request.method == "edit" and request.pattern == "solid-red":
                return self._make(request)
            return None

        @hookimpl
        def fixative_rebuild_target(self, recorded, request):
            if recorded.get("kind") != "solid-colour":
                return None
            return self._make(request)

        @staticmethod
        def _make(request):
            _, h, w = request.artwork.shape
            image = torch.zeros(3, h, w)
            image[0] = 1.0
            return Target(
                "edit", "solid-colour", "flat red (test plugin)", image=image, details={"colour": "red"}
            )

    return Plugin()


def test_a_plugins_target_is_made_and_checked(taef2, small_artwork, tmp_path):
    from fixative.plugins import manager

    plugin = _plugin()
    manager().register(plugin)
    try:
        result = fixative.protect(
            small_artwork, "edit", models=[taef2], pattern="solid-red", quality="fast", steps=3
        )
        assert result.report.target["kind"] == "solid-colour"
        original = tmp_path / "o.png"
        small_artwork.save(original)
        written = result.save(tmp_path / "p.png")
        checked = fixative.check(written, original=original, models=[taef2], fast=True, transfer=False)
        assert checked.target["rebuilt"] and checked.target["hash_match"]
        assert checked.strength is not None and checked.strength > 0.1
    finally:
        manager().unregister(plugin)
    # without the plugin, the file's target cannot be rebuilt: said, not guessed
    checked = fixative.check(written, original=original, models=[taef2], fast=True, transfer=False)
    assert checked.strength is None and not checked.target["rebuilt"]
