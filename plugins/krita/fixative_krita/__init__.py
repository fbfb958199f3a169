"""Fixative for Krita: export a protected copy, or protect into a new layer, without leaving Krita.

Loaded by Krita's Python plug-in manager (``fixative_krita.desktop``). Outside Krita (tests, scripts)
importing the package registers nothing, so its Qt-free modules stay usable.
"""

from __future__ import annotations

try:
    import krita
except ImportError:  # not inside Krita
    krita = None

DOCKER_ID = "fixative_docker"

if krita is not None and hasattr(krita, "Krita") and krita.Krita.instance() is not None:
    from .docker import FixativeDockWidget
    from .extension import FixativeExtension

    _app = krita.Krita.instance()
    _app.addExtension(FixativeExtension(_app))
    _app.addDockWidgetFactory(
        krita.DockWidgetFactory(DOCKER_ID, krita.DockWidgetFactoryBase.DockRight, FixativeDockWidget)
    )
