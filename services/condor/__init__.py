"""The pool's shared HTCondor language: submit files, macros, ClassAds, slot ads; and the
records a pilot keeps in its work directory (pilotdir). Not a service.

Services meet only on the bus; what they must agree on about HTCondor lives
here, and every service may import it (tests/unit/test_import_graph.py).
"""
