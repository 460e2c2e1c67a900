"""Confined container kernels: bubblewrap, ipc connections, memory limits, network policy.

- :mod:`.provisioner` — the ``exec-sessions-bwrap`` kernel provisioner (one sandbox per kernel);
- :mod:`._command` — the bubblewrap command line (what a kernel can see);
- :mod:`._memory` — memory limits (cgroup v2, cgroup v1 or rlimits);
- :mod:`._proxy` / :mod:`._forwarder` — the ``allowlist`` network path;
- :mod:`._leftovers` — killing what a crashed run of this server left behind;
- :mod:`._probe`, :mod:`._kernelspec` — start-up: does bwrap work, the confined kernel spec;
- :mod:`.confinement` — what the container service asks of the sandbox.
"""
