"""User-facing errors: the message names the file or item and says what to do."""


class CrossanError(Exception):
    """An expected failure caused by input or environment, reported without a traceback."""


class DataError(CrossanError):
    """Malformed or missing input data (CSV rows, layout, media files)."""


class DownloadError(CrossanError):
    """A download that cannot be completed (404, retries exhausted, size mismatch)."""


class ConfigError(CrossanError):
    """An invalid ``config.yaml``."""
