"""Providers by name. Tenancy, handouts and the CLI only ever see the `Provider` interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datathon.errors import ConfigError

if TYPE_CHECKING:
    from datathon.core.context import Context
    from datathon.providers.base import Provider

# name -> "module:Class", imported on use so that reading the config stays cheap.
PROVIDERS: dict[str, str] = {
    "local": "datathon.providers.local:LocalProvider",
    "aws": "datathon.providers.aws:AwsProvider",
}


def get_provider(ctx: Context) -> Provider:
    import importlib

    name = ctx.config.provider
    if name not in PROVIDERS:
        raise ConfigError(f"unknown provider {name!r}", hint=f"valid providers: {', '.join(sorted(PROVIDERS))}")
    module, cls = PROVIDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(ctx)
