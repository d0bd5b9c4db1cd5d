class ConfigError(Exception):
    """Raised where Kong would refuse to start (or refuse a reload)."""
