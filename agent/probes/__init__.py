"""The agent's probes, one module per kind; the runner (agent.runner) schedules them.

Registry of probe kinds and their entry points:
  hardware  agent.probes.hardware.collect_hardware(host)   CPU, memory, filesystems, OS
  gpus      agent.probes.gpu.collect_gpus(host)            PCI scan + NVML
  mounts    agent.probes.mounts.MountProber(...).probe()   shared volume state and markers
  egress    agent.probes.egress.probe.probe_targets(...)   phase-by-phase HTTPS reachability
Probes return agent.probes.results dataclasses and never import the wire code.
"""
