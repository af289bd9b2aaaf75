"""The collector's view of Kubernetes: one small adapter over the official client.

`adapter` (KubeSource: kubeconfig / in-cluster config, the reads, errors as text),
`watcher` (KubeWatcher: polls in the background and keeps the last good view),
`quantity` (resource quantities as the API writes them), `view` (KubeFacts, KubeNode:
the plain data every rule and output reads; nothing else imports kubernetes).
"""
