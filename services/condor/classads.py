"""ClassAds as HTCondor users know them.

`classad2` alone evaluates stringListMember(), split() and the other HTCondor
ClassAd functions to Error; importing `htcondor2` registers them. Jobs and
group expressions written for HTCondor use them, so every process that
evaluates ClassAds imports this module (services/__init__.py does).
"""

import classad2
import htcondor2  # noqa: F401  (registers HTCondor's ClassAd functions in classad2)

__all__ = ["classad2"]
