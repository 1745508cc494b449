"""burstwms services. Importing the package loads HTCondor's ClassAd functions
(see condor/classads.py), so every service evaluates expressions the same way."""

from .condor import classads as _classads  # noqa: F401
