"""Code that runs inside every container kernel, installed through the kernel's own channel.

Standard library only and nothing from this package: these modules are sent to the kernel as
source text (``inspect.getsource``), so they must stand alone.
"""
