"""The one family of errors zumik raises.

Every message says what happened and what to do next; the CLI turns any of them into a one-line
``Error: ...`` and the class's exit code, in one place.
"""


class ZumikError(Exception):
    """Base of every error zumik raises on purpose."""

    exit_code = 1


class InputError(ZumikError):
    """The input cannot be read as any known trace format."""

    exit_code = 2


class DatasetError(ZumikError):
    """The dataset is missing, unreadable or written by another schema version."""

    exit_code = 4


class MissingExtraError(ZumikError):
    """An optional dependency (an extra) is needed for this command."""

    exit_code = 3


class RulesError(ZumikError):
    """A rules pack is missing or malformed."""

    exit_code = 5


class ReleaseError(ZumikError):
    """The alias release history is malformed, inconsistent, or changes a release the dataset already knows."""

    exit_code = 6


class StorageError(ZumikError):
    """Object storage cannot be used: an unsupported scheme, a missing bucket, refused credentials, no endpoint."""

    exit_code = 7
