"""A stand-in for Krita's ``krita`` module, so the plug-in's logic runs under pytest outside Krita.

It stores pixels in the same in-memory layouts Krita uses (RGBA U8/U16 as B,G,R,A; F16/F32 as R,G,B,A;
GRAYA as grey, alpha) so the plug-in's conversions are tested against what ``pixelData`` really returns.
``Krita.instance()`` answers None until a test calls ``Krita.activate()``, so importing the plug-in
package registers nothing by accident.
"""

from __future__ import annotations

import struct

BYTES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
CHANNELS = {"RGBA": 4, "GRAYA": 2, "CMYKA": 5, "LABA": 4}


def pack_pixel(model: str, depth: str, values: tuple) -> bytes:
    """One pixel from logical (R, G, B, A) / (grey, A) values in 0..1, in Krita's memory order."""
    if model == "RGBA" and depth in ("U8", "U16"):
        r, g, b, a = values
        values = (b, g, r, a)
    if depth == "U8":
        return bytes(round(v * 255) for v in values)
    if depth == "U16":
        return struct.pack(f"<{len(values)}H", *(round(v * 65535) for v in values))
    return struct.pack(f"<{len(values)}{'e' if depth == 'F16' else 'f'}", *values)


class _Settings:
    store: dict = {}


class Selection:
    def __init__(self, x: int, y: int, mask_rows: list[bytes]) -> None:
        self._x, self._y, self._rows = x, y, mask_rows

    def x(self) -> int:
        return self._x

    def y(self) -> int:
        return self._y

    def width(self) -> int:
        return len(self._rows[0]) if self._rows else 0

    def height(self) -> int:
        return len(self._rows)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        out = bytearray()
        for row in range(y, y + h):
            for col in range(x, x + w):
                inside = self._y <= row < self._y + self.height() and self._x <= col < self._x + self.width()
                out.append(self._rows[row - self._y][col - self._x] if inside else 0)
        return bytes(out)


class Node:
    def __init__(
        self,
        name: str,
        width: int,
        height: int,
        model: str = "RGBA",
        depth: str = "U8",
        profile: str = "sRGB-elle-V2-srgbtrc.icc",
        data: bytes | None = None,
        kind: str = "paintlayer",
    ) -> None:
        self._name, self._w, self._h, self._kind = name, width, height, kind
        self._model, self._depth, self._profile = model, depth, profile
        self._data = bytearray(data if data is not None else bytes(self._pixel_size() * width * height))
        self.children: list[Node] = []
        self.parent: Node | None = None

    def _pixel_size(self) -> int:
        return CHANNELS[self._model] * BYTES[self._depth]

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return self._kind

    def colorModel(self) -> str:  # noqa: N802
        return self._model

    def colorDepth(self) -> str:  # noqa: N802
        return self._depth

    def colorProfile(self) -> str:  # noqa: N802
        return self._profile

    def setColorSpace(self, model: str, depth: str, profile: str) -> bool:  # noqa: N802
        if any(self._data):
            raise AssertionError("the mock only supports changing the colour space of an empty layer")
        self._model, self._depth, self._profile = model, depth, profile
        self._data = bytearray(self._pixel_size() * self._w * self._h)
        return True

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        size, out = self._pixel_size(), bytearray()
        for row in range(y, y + h):
            start = (row * self._w + x) * size
            out += self._data[start : start + w * size]
        return bytes(out)

    projectionPixelData = pixelData  # noqa: N815

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> None:  # noqa: N802
        size = self._pixel_size()
        if len(data) != w * h * size:
            raise AssertionError(f"setPixelData got {len(data)} bytes for {w}x{h}x{size}")
        for row in range(h):
            start = ((y + row) * self._w + x) * size
            self._data[start : start + w * size] = data[row * w * size : (row + 1) * w * size]

    def parentNode(self):  # noqa: N802
        return self.parent

    def childNodes(self) -> list:  # noqa: N802
        return list(self.children)  # bottom to top, like Krita

    def addChildNode(self, child, above) -> bool:  # noqa: N802
        child.parent = self
        index = self.children.index(above) + 1 if above is not None else 0
        self.children.insert(index, child)
        return True


class Document:
    def __init__(
        self,
        width: int,
        height: int,
        model: str = "RGBA",
        depth: str = "U8",
        profile: str = "sRGB-elle-V2-srgbtrc.icc",
        data: bytes | None = None,
        path: str = "",
        selection: Selection | None = None,
    ) -> None:
        self._w, self._h, self._path, self._selection = width, height, path, selection
        self._model, self._depth, self._profile = model, depth, profile
        self.root = Node("root", width, height, model, depth, profile, kind="grouplayer")
        self.background = Node("Background", width, height, model, depth, profile, data)
        self.root.addChildNode(self.background, None)
        self._active = self.background
        self.refreshed = 0
        self.closed = False

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def name(self) -> str:
        return "Untitled"

    def fileName(self) -> str:  # noqa: N802
        return self._path

    def colorModel(self) -> str:  # noqa: N802
        return self._model

    def colorDepth(self) -> str:  # noqa: N802
        return self._depth

    def colorProfile(self) -> str:  # noqa: N802
        return self._profile

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        """The projection; the mock composites nothing, so it is the bottom layer."""
        return self.background.pixelData(x, y, w, h)

    def selection(self):
        return self._selection

    def activeNode(self):  # noqa: N802
        return self._active

    def setActiveNode(self, node) -> None:  # noqa: N802
        self._active = node

    def rootNode(self):  # noqa: N802
        return self.root

    def createNode(self, name: str, kind: str):  # noqa: N802
        return Node(name, self._w, self._h, self._model, self._depth, self._profile, kind=kind)

    def waitForDone(self) -> None:  # noqa: N802
        pass

    def refreshProjection(self) -> None:  # noqa: N802
        self.refreshed += 1

    def clone(self):
        raise AssertionError("the mock cannot convert colour spaces; tests use sRGB-family documents")

    def close(self) -> bool:
        self.closed = True
        return True


class Krita:
    _instance = None

    def __init__(self) -> None:
        self.settings: dict = {}
        self.document: Document | None = None
        self.extensions: list = []
        self.docker_factories: list = []

    @classmethod
    def instance(cls):
        return cls._instance

    @classmethod
    def activate(cls) -> Krita:
        cls._instance = cls()
        return cls._instance

    @classmethod
    def deactivate(cls) -> None:
        cls._instance = None

    def readSetting(self, group: str, name: str, default: str) -> str:  # noqa: N802
        return self.settings.get((group, name), default)

    def writeSetting(self, group: str, name: str, value: str) -> None:  # noqa: N802
        self.settings[(group, name)] = str(value)

    def activeDocument(self):  # noqa: N802
        return self.document

    def batchmode(self) -> bool:
        return True

    def addExtension(self, extension) -> None:  # noqa: N802
        self.extensions.append(extension)

    def addDockWidgetFactory(self, factory) -> None:  # noqa: N802
        self.docker_factories.append(factory)


class Extension:
    def __init__(self, parent=None) -> None:
        self._parent = parent


class DockWidget:
    def __init__(self) -> None:
        self.title, self.widget = "", None

    def setWindowTitle(self, title: str) -> None:  # noqa: N802
        self.title = title

    def setWidget(self, widget) -> None:  # noqa: N802
        self.widget = widget


class DockWidgetFactoryBase:
    DockRight = 1


class DockWidgetFactory:
    def __init__(self, name: str, position: int, cls) -> None:
        self.name, self.position, self.cls = name, position, cls
