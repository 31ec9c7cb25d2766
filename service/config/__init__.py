"""Settings, grouped by concern and read once from `PIXHOOK_*` environment variables.

`python -m service.config > docs/configuration.md` writes the reference from the declarations.
"""

from service.config.delivering import DeliverySettings, DlqSettings, EndpointSettings
from service.config.fields import ConfigError
from service.config.serving import (
    ApiSettings,
    ClientSettings,
    ConsoleSettings,
    LoggingSettings,
    RedisSettings,
    StorageSettings,
)
from service.config.settings import Settings, declarations, read_section, sections
from service.config.unknown import warn_of_unknown_variables
from service.config.work import BatchSettings, JobSettings, LimitSettings, ProviderSettings

__all__ = [
    "ApiSettings",
    "BatchSettings",
    "ClientSettings",
    "ConfigError",
    "ConsoleSettings",
    "DeliverySettings",
    "DlqSettings",
    "EndpointSettings",
    "JobSettings",
    "LimitSettings",
    "LoggingSettings",
    "ProviderSettings",
    "RedisSettings",
    "Settings",
    "StorageSettings",
    "declarations",
    "read_section",
    "sections",
    "warn_of_unknown_variables",
]
