"""Contract tests: proto, docs, alert rules, dashboard."""
