"""The embedded cloud: an EC2/S3 endpoint (moto) and a VM host that boots glideins.

Importing the package is cheap (no moto): the factory's ec2 driver reads
`profiles` and `endpoint` from here.
"""
