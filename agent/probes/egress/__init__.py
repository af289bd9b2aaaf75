"""Egress probe, one module per phase (as blackbox_exporter's tcp/tls/http probers).

`probe` orchestrates one target through `resolve` (DNS), `connect` (TCP), `proxy_connect`
(HTTP CONNECT), `tls` and `http`; `state` holds what one probe knows so far.
Entry points: `agent.probes.egress.probe.probe_target` / `probe_targets`.
"""
