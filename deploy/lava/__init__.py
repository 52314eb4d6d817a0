"""Lava backend of SpikeTrack: process packages (`procs`), network builder (`builder`), runner (`runner`).

Importing this package applies the Python 3.11 shims (`deploy.lava_compat`) before any Lava import.
"""
from deploy.lava_compat import install

install()  # the 3.11 shims, right before the first Lava import (idempotent)
