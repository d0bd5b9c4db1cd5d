"""Kong 3.9+ stand-in: drives real kong-pdk plugin-server processes like Kong does."""

from .core import KongStandIn
from .declarative import load_declarative
from .errors import ConfigError
from .records import PdkCall, RequestRecord

__all__ = ["KongStandIn", "ConfigError", "load_declarative", "RequestRecord", "PdkCall"]
