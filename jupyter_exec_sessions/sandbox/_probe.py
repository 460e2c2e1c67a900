"""Does bubblewrap work here? Asked once at start-up by ``sandbox = auto | bwrap``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from ._command import bwrap_args, python_roots, sandbox_env

__all__ = ["probe_bwrap"]


def probe_bwrap(bwrap: str = "bwrap") -> tuple[bool, str]:
    """Run a trivial command under the same confinement kernels get: (works, why)."""
    exe = shutil.which(bwrap)
    if exe is None:
        return False, f"{bwrap!r} is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as kdir:
        args = bwrap_args(
            data_dir=data,
            kernel_dir=kdir,
            env=sandbox_env({}, {}),
            ro_roots=python_roots(),
        )
        try:
            done = subprocess.run(
                [exe, *args, "--", "/bin/sh", "-c", "test -w /mnt/data"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"{exe} could not run: {e}"
    if done.returncode != 0:
        return False, f"{exe} failed here ({done.returncode}): {done.stderr.strip()[:300]}"
    return True, f"{exe} works here"
