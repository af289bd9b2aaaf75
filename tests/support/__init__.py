"""Shared test helpers: builders, servers and fakes used across the test tree."""
