"""Trackers (reference baselines, SpikeTrack) and the one-pass runner shared by all of them."""
