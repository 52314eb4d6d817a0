"""Tracking datasets: sequences with frames and ground truth (pytracking style)."""
