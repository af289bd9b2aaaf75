"""Tests of the collector (target layout)."""
