"""Third-party chatter off stderr: one place for the CLI and the batch workers (which are other processes)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Third-party warnings (torch, diffusers, huggingface_hub) stay off stderr unless ``-v``."""
    warnings.filterwarnings("ignore")
    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(name, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for logger in ("diffusers", "transformers", "huggingface_hub", "torch", "PIL"):
        logging.getLogger(logger).setLevel(logging.ERROR)
