"""What every party knows of the clouds, and no service owns.

- `profiles.py`: how each middleware (aws, openstack, opennebula, eucalyptus)
  differs, as data: the embedded cloud behaves by it, the ec2 driver asks for
  terminate-on-shutdown by it.
- `endpoint.py`: where the embedded cloud listens (<state>/run/cloud.json),
  for the cloud service that writes it and the driver and CLI that read it.

Like services/condor and services/runtime, it imports no service: services
meet only on the bus (tests/unit/test_import_graph.py).
"""
