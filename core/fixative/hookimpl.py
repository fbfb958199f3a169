"""The mark a plug-in puts on its hook implementations (pluggy's ``HookimplMarker``).

Apart from the specifications (``fixative.hookspecs``, which name the stages' types): the built-in model
families and targets implement hooks, and importing the mark from here keeps their imports running down.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("fixative")
