"""Network architectures. Importing this package registers every architecture and named model."""

from odisr.models.archs import (  # noqa: F401  (imported for their registrations)
    awsrn,
    bicubic,
    camixer_osr,
    camixersr,
    san,
    swinir,
)
