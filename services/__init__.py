"""burstwms services. Importing the package loads HTCondor's ClassAd functions
(see runtime/classads.py), so every service evaluates expressions the same way."""

from .runtime import classads as _classads  # noqa: F401
