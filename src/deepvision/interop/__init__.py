"""Bringing models in from other frameworks (MXNet checkpoints)."""
