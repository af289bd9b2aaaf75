"""Fixtures of the collector tests: the kmock-served Kubernetes API (`api`)."""

from tests.support.kube import api  # noqa: F401 — pytest finds the fixture by name
