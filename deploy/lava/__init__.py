"""Lava backend of SpikeTrack: process packages (`procs`), the network builder and runner (`builder`)."""
