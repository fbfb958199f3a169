"""``fixative batch``: a whole catalogue protected as a Ray Data pipeline (``pip install 'fixative[ray]'``).

``rows`` plans the work without Ray (inputs, outputs, per-row options, what a re-run skips); ``runner``
runs it: read → ``map_batches`` on an actor pool whose actors load the encoders once → written images
plus one manifest row per input.
"""
