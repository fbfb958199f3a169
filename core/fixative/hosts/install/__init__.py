"""``fixative install krita|gimp|comfyui``: put a host integration where its program finds it."""
