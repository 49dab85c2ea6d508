"""The plugin manager and the IdP registry.

Built-in plugins load exactly as a partner's do: through the `scim_hub` entry-point group. A plugin
that fails to import, or whose `register_idps` raises, is reported by name and left out; the hub
and every other plugin keep working.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pluggy
import structlog

from hub import hookspecs
from hub.core.dialects import Dialect

log = structlog.get_logger("hub.plugins")


@dataclass(frozen=True)
class PluginInfo:
    """What `scim-hub plugins` shows of one plugin."""

    name: str
    version: str
    hooks: tuple[str, ...]
    error: str | None = None


@dataclass
class Registry:
    """The plugin manager plus the typed registry built from it at start-up."""

    manager: pluggy.PluginManager
    dialects: dict[str, Dialect] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    def dialect(self, name: str) -> Dialect | None:
        """Return the dialect registered under `name`, if its plugin is installed and healthy."""
        return self.dialects.get(name)

    def broadcast(self, hook: str, **kwargs: Any) -> None:
        """Call an event hook on every plugin; a failing plugin is logged by name and skipped."""
        caller = getattr(self.manager.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("plugin hook failed", plugin=impl.plugin_name, hook=hook)


def _distribution_version(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return dist.version if dist is not None else "unknown"


def build_registry(extra_plugins: Mapping[str, object] | None = None) -> Registry:
    """Load every `scim_hub` entry point (plus `extra_plugins`) and build the IdP registry."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    versions: dict[str, str] = {}
    for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
            versions[entry_point.name] = _distribution_version(entry_point)
        except Exception as exc:
            log.error("plugin failed to load", plugin=entry_point.name, error=repr(exc))
            registry.plugins.append(
                PluginInfo(entry_point.name, _distribution_version(entry_point), (), repr(exc))
            )
    for name, plugin in (extra_plugins or {}).items():
        manager.register(plugin, name=name)
        versions[name] = "local"
    manager.check_pending()
    for name, version in versions.items():
        registry.plugins.append(PluginInfo(name, version, _hooks_of(manager, name)))
    _collect_dialects(registry)
    registry.plugins.sort(key=lambda info: info.name)
    return registry


def _hooks_of(manager: pluggy.PluginManager, name: str) -> tuple[str, ...]:
    plugin = manager.get_plugin(name)
    callers = manager.get_hookcallers(plugin) or []
    return tuple(sorted(caller.name for caller in callers))


def _collect_dialects(registry: Registry) -> None:
    for impl in registry.manager.hook.register_idps.get_hookimpls():
        try:
            dialects = cast(list[Dialect], impl.function())
        except Exception as exc:
            log.error("plugin failed in register_idps", plugin=impl.plugin_name, error=repr(exc))
            continue
        for dialect in dialects:
            if dialect.name in registry.dialects:
                other = registry.dialects[dialect.name].plugin
                raise RuntimeError(
                    f"IdP {dialect.name!r} is registered by both {other!r} and {impl.plugin_name!r}"
                )
            registry.dialects[dialect.name] = _with_plugin(dialect, impl.plugin_name)


def _with_plugin(dialect: Dialect, plugin: str) -> Dialect:
    import msgspec

    return msgspec.structs.replace(dialect, plugin=plugin)
