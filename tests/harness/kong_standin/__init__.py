"""Kong 3.9+ stand-in: drives real kong-pdk plugin-server processes like Kong does."""
from .errors import ConfigError
from .declarative import load_declarative
from .core import KongStandIn, RequestRecord, PdkCall

__all__ = ["KongStandIn", "ConfigError", "load_declarative", "RequestRecord", "PdkCall"]
