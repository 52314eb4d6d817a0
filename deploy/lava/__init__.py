"""Lava backend of SpikeTrack: process packages (`procs`), network builder (`builder`), runner (`runner`).

Importing this package applies the Python 3.11 shims (`deploy.lava_compat`) before any Lava import.
"""
import deploy.lava_compat  # noqa: F401
