from datathon.config.loader import DEFAULT_CONFIG, LoadedConfig, load_config
from datathon.config.models import EventConfig, Policy, Team

__all__ = ["DEFAULT_CONFIG", "EventConfig", "LoadedConfig", "Policy", "Team", "load_config"]
