"""mmrec: multimodal and cross-domain representations for recommendation."""

from mmrec.errors import InputError, MissingWeightsError, MMRecError, UsageError
from mmrec.registry import Registry

__version__ = "0.1.0"

__all__ = ["InputError", "MMRecError", "MissingWeightsError", "Registry", "UsageError", "__version__"]
