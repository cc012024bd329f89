"""Pooling ops (max with switches, unpool, average, adaptive average) — validated wrappers."""
from __future__ import annotations

__all__: list = []
