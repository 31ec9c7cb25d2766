"""`python -m service.config > docs/configuration.md` rewrites the settings reference."""

from service.config.docs import configuration_markdown

print(configuration_markdown(), end="")
