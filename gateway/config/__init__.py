"""Site configuration: typed models, validation, look-ups (contract §4)."""

from gateway.config.loader import ConfigError, ConfigProblem, load_site, load_yaml, parse_site
from gateway.config.site import Site

__all__ = ["ConfigError", "ConfigProblem", "Site", "load_site", "load_yaml", "parse_site"]
