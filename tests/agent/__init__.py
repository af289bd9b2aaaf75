"""Tests of the agent (target layout)."""
