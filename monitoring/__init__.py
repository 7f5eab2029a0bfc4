"""Monitoring sidecar: tails the event log, joins labels, computes drift and accuracy (no torch)."""
