"""Fixative for ComfyUI: protect artworks against diffusion models, inside any graph.

ComfyUI imports this folder as a package from ``custom_nodes/`` and reads the two mappings below.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
