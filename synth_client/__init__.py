"""Python client for the synthetic-data platform.

    from synth_client import SynthClient
    with SynthClient() as client:
        dataset = client.upload_dataset("adult.csv")

The public surface is :class:`SynthClient`, :class:`SynthError` and
:class:`LocalPlatform` (starts the services on this machine)."""

from synth_client.client import SynthClient
from synth_client.errors import SynthError
from synth_client.local import LocalPlatform

__all__ = ["LocalPlatform", "SynthClient", "SynthError"]
