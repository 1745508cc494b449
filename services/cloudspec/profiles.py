"""How each cloud middleware differs, as data: one field per difference.

    profile     user data from              guest shutdown leaves the VM      shutdown flag
    aws         IMDS, v2 tokens required    terminated (flag = terminate)     honoured
    eucalyptus  IMDS v1 (no tokens)         terminated (flag = terminate)     honoured
    openstack   IMDS v1 + config drive      stopped, state SHUTOFF            accepted, ignored
    opennebula  context disk (context.sh)   stopped, state UNKNOWN            not supported

The factory's ec2 driver reads `shutdown_flag` (whether to send
InstanceInitiatedShutdownBehavior=terminate); the embedded cloud reads the
rest to behave like that middleware (see services/cloud/README.md); the
glidein reads none of it: it finds out from what its VM offers.
Sources: the GlideinWMS cloud paper (../shared/reference), the AWS IMDS and
OpenStack config-drive documentation, OpenNebula's contextualization guide.
"""

from __future__ import annotations

from dataclasses import dataclass

HONOURED, IGNORED, UNSUPPORTED = "honoured", "ignored", "unsupported"


@dataclass(frozen=True)
class Profile:
    name: str
    imds: str  # "v2": session tokens required; "v1": plain GETs; "": no metadata service
    config_drive: bool  # an OpenStack config drive (openstack/latest/user_data, meta_data.json)
    context_disk: bool  # an OpenNebula context CD (context.sh)
    shutdown_flag: str  # InstanceInitiatedShutdownBehavior: honoured | ignored | unsupported
    stopped_state: str  # the middleware's own name for a VM its guest shut down (a tag)
    partition: str  # IMDS meta-data/services/partition ("aws" on AWS; absent elsewhere)
    openstack_metadata: bool  # the metadata service also serves /openstack/latest/

    @property
    def sends_shutdown_flag(self) -> bool:
        """The driver asks for terminate-on-shutdown only where the API takes the parameter."""
        return self.shutdown_flag != UNSUPPORTED


PROFILES = {
    p.name: p
    for p in (
        Profile("aws", imds="v2", config_drive=False, context_disk=False,
                shutdown_flag=HONOURED, stopped_state="", partition="aws",
                openstack_metadata=False),
        Profile("eucalyptus", imds="v1", config_drive=False, context_disk=False,
                shutdown_flag=HONOURED, stopped_state="", partition="",
                openstack_metadata=False),
        # The paper: "OpenStack ignores this flag ... the VM goes into SHUTDOWN state".
        Profile("openstack", imds="v1", config_drive=True, context_disk=False,
                shutdown_flag=IGNORED, stopped_state="SHUTOFF", partition="",
                openstack_metadata=True),
        # "OpenNebula does not support such a flag ... UNKNOWN state"; no metadata server.
        Profile("opennebula", imds="", config_drive=False, context_disk=True,
                shutdown_flag=UNSUPPORTED, stopped_state="UNKNOWN", partition="",
                openstack_metadata=False),
    )
}
DEFAULT = PROFILES["aws"]


def profile_for(provider: str) -> Profile:
    """The profile of an entry's provider; anything else behaves like AWS."""
    return PROFILES.get(provider, DEFAULT)
