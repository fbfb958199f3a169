"""Host glue: installers for editor plug-ins and ComfyUI, and the standard-library client they carry."""
