"""yoloops: the user's CLI and the local stack (never imported by Lambda functions)."""

__version__ = "0.1.0"
