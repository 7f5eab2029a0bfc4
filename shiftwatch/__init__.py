"""shiftwatch core: contracts every stage shares (torch-free, no import-time side effects)."""

__version__ = "0.1.0"
