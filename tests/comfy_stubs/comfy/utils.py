"""Stand-in for ``comfy.utils``: ProgressBar and the global progress hook, as in ComfyUI.

ComfyUI's server installs a hook (``main.hijack_progress``) that first calls
``comfy.model_management.throw_exception_if_processing_interrupted()`` and then sends the progress to the
browser; ``install_server_hook`` reproduces that, recording the updates instead of sending them.
"""

from __future__ import annotations

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    """Same contract as ComfyUI: the hook is captured at construction and called on every update."""

    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)


def install_server_hook(record: list) -> None:
    """What ComfyUI's ``main.hijack_progress`` installs: raise when interrupted, else report progress."""
    from . import model_management

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        model_management.throw_exception_if_processing_interrupted()
        record.append((value, total))

    set_progress_bar_global_hook(hook)
