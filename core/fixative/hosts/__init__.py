"""The hosts: thin glue over the API (command line, engine server, pipeline client, installers).

Editor plug-ins (``plugins/``) and the ComfyUI nodes (``comfyui_nodes/``) are hosts too; they live beside
the package because they run inside other programs.
"""
