"""Tests of the deployment manifests and examples (target layout)."""
