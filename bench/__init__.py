"""Fixative's speed benchmark: ``python -m bench.run`` (see docs/speed.md)."""
