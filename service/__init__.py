"""Serving stage: the BentoML service and its parts (no torch, no training/)."""
