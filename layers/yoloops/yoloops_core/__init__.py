"""yoloops domain logic and AWS adapters, shipped as the Lambda layer.

Kept light on purpose: no torch, no ultralytics, no moto, boto3 clients made lazily.
"""

__version__ = "0.1.0"
