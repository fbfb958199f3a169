"""Stand-in for ComfyUI's ``folder_paths``: named model folders, file lists and full paths."""

from __future__ import annotations

import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
output_directory = ""


def set_models_dir(models_dir: str) -> None:
    """Point every model folder the nodes use at ``models_dir/<name>`` (as ComfyUI's defaults do)."""
    folder_names_and_paths.clear()
    for name in ("checkpoints", "vae", "vae_approx"):
        folder_names_and_paths[name] = ([os.path.join(models_dir, name)], set(supported_pt_extensions))


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[folder_name][0][:]


def get_output_directory() -> str:
    return output_directory


def filter_files_extensions(files, extensions):
    return sorted(f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions)


def get_filename_list(folder_name: str) -> list[str]:
    """Relative file names (with sub-folders, '/'-separated) under every path of the folder, sorted."""
    paths, extensions = folder_names_and_paths[folder_name]
    found: set[str] = set()
    for base in paths:
        if not os.path.isdir(base):
            continue
        for root, _dirs, files in os.walk(base, followlinks=True):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/")
                found.add(rel)
    return filter_files_extensions(found, extensions)


def get_full_path(folder_name: str, filename: str) -> str | None:
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for base in folder_names_and_paths[folder_name][0]:
        full = os.path.join(base, filename)
        if os.path.isfile(full):
            return full
        if os.path.islink(full):
            return None
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full = get_full_path(folder_name, filename)
    if full is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full
