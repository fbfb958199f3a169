"""The version of Fixative, in one place (hosts, reports and metadata read it from here)."""

__version__ = "0.1.0"
