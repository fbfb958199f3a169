"""Stand-in for the ``comfy`` package (tests only): utils, model_management, sd, taesd-like VAE."""
