"""The plugin manager and the IdP registry.

Built-in plugins load exactly as a partner's do: through the `scim_hub` entry-point group. A plugin
that fails to import, implements a hook the contract does not define, or whose `register_idps`
raises or returns something that is not a valid list of `Dialect` values, is reported by name
(logged, and shown as broken by `scim-hub plugins`) and left out; the hub and every other plugin
keep working.

Plugin settings are the exception: a plugin that declares a settings struct and is given a bad
value stops the start-up with a `PluginSettingsError` naming the plugin and the variable, like
any other bad setting (STYLE.md "Configuration").
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import site
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pluggy
import structlog

from hub import hookspecs
from hub.core.dialects import (
    PROFILE_FIELDS,
    Dialect,
    JSONObject,
    RequestContext,
    rewrites_queries,
)
from hub.core.events import Lazy
from hub.settings import PLUGIN_ENV_PREFIX, SettingsError, resembling
from rules import FilterSyntaxError, parse_path

log = structlog.get_logger("hub.plugins")
#: A dialect's request normalisation (`Dialect.normalise`).
NormaliseStep = Callable[[JSONObject, RequestContext], JSONObject]
QueryStep = Callable[[dict[str, str], RequestContext], dict[str, str]]

_IDP_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
S = TypeVar("S", bound=msgspec.Struct)
#: What a chain of request rewrites passes along: a body or query parameters.
_T = TypeVar("_T")


class PluginSettingsError(SettingsError):
    """A plugin's settings are malformed; the message names the plugin and the variable."""


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
    #: plugin name -> its validated settings struct instance.
    settings: dict[str, msgspec.Struct] = field(default_factory=dict)

    def dialect(self, name: str) -> Dialect | None:
        """Return the dialect registered under `name`, if its plugin is installed and healthy."""
        return self.dialects.get(name)

    def context(
        self,
        dialect: Dialect,
        *,
        method: str,
        resource_type: str,
        operation: str,
        query: Mapping[str, str] | None = None,
    ) -> RequestContext:
        """Build the `RequestContext` a dialect hook receives (with its plugin's settings)."""
        return RequestContext(
            method=method,
            resource_type=resource_type,
            operation=operation,
            query=dict(query or {}),
            settings=self.settings.get(dialect.plugin),
        )

    def broadcast(self, hook: str, **kwargs: Any) -> None:
        """Call an event hook on every plugin; a failing plugin is logged by name and skipped.

        A `Lazy` argument is built only if some plugin implements the hook.
        """
        caller = getattr(self.manager.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{k: _resolved(kwargs[k]) for k in impl.argnames})
            except Exception:
                log.exception("plugin hook failed", plugin=impl.plugin_name, hook=hook)


def _resolved(argument: Any) -> Any:
    return argument.value() if isinstance(argument, Lazy) else argument


def _distribution_version(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return dist.version if dist is not None else "unknown"


@functools.cache
def _install_dirs() -> frozenset[str]:
    return frozenset({*site.getsitepackages(), site.getusersitepackages()})


def _path_state() -> tuple[tuple[str, int], ...]:
    """`sys.path`, with the mtime of each directory on it that pip installs into.

    Only those: another directory on the path (a script's, the working directory) can change
    at any moment without a distribution being installed or removed.
    """
    state = []
    for entry in sys.path:
        mtime = -1
        if entry in _install_dirs():
            with contextlib.suppress(OSError):
                mtime = os.stat(entry).st_mtime_ns
        state.append((entry, mtime))
    return tuple(state)


def _entry_points() -> tuple[tuple[importlib.metadata.EntryPoint, str], ...]:
    """The `scim_hub` entry points, each with its distribution's version.

    Reading them parses every installed distribution's metadata (~10 ms), and an app is built
    per test. The answer is kept while `sys.path` and the mtimes of its install directories
    stay the same (as importlib.metadata's own directory cache), so a plugin pip installs or
    removes in the process (the partner plugin tests) is seen by the next registry. One
    installed in place into another directory already on the path is seen on restart.
    """
    return _entry_points_at(_path_state())


@functools.lru_cache(maxsize=1)
def _entry_points_at(
    _state: tuple[tuple[str, int], ...],
) -> tuple[tuple[importlib.metadata.EntryPoint, str], ...]:
    """The `scim_hub` entry points read afresh; cached for the last path state it was given."""
    return tuple(
        (entry_point, _distribution_version(entry_point))
        for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT)
    )


def build_registry(
    extra_plugins: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Registry:
    """Load every `scim_hub` entry point (plus `extra_plugins`) and build the IdP registry.

    Args:
        extra_plugins: plugin name -> module or object with hookimpls, registered after the
            entry points (tests, embedding).
        environ: where plugin settings are read from (default: `os.environ`).

    Raises:
        PluginSettingsError: a plugin's settings variable is malformed.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    versions: dict[str, str] = {}
    broken: dict[str, PluginInfo] = {}
    for entry_point, version in _entry_points():
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
            versions[entry_point.name] = version
        except Exception as exc:
            log.error("plugin failed to load", plugin=entry_point.name, error=repr(exc))
            broken[entry_point.name] = PluginInfo(entry_point.name, version, (), repr(exc))
    for name, plugin in (extra_plugins or {}).items():
        try:
            manager.register(plugin, name=name)
            versions[name] = "local"
        except Exception as exc:
            log.error("plugin failed to load", plugin=name, error=repr(exc))
            broken[name] = PluginInfo(name, "local", (), repr(exc))
    _check_pending(manager, versions, broken)
    _collect_dialects(registry, versions, broken)
    _load_settings(registry, os.environ if environ is None else environ)
    for name, version in versions.items():
        registry.plugins.append(PluginInfo(name, version, _hooks_of(manager, name)))
    registry.plugins.extend(broken.values())
    registry.plugins.sort(key=lambda info: info.name)
    return registry


def _check_pending(
    manager: pluggy.PluginManager, versions: dict[str, str], broken: dict[str, PluginInfo]
) -> None:
    """`check_pending()`, one plugin at a time: a misspelt hook breaks only its own plugin."""
    while True:
        try:
            manager.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = manager.get_name(exc.plugin) or repr(exc.plugin)
            log.error("plugin implements an unknown hook", plugin=name, error=str(exc))
            hooks = _hooks_of(manager, name)
            manager.unregister(exc.plugin)
            broken[name] = PluginInfo(name, versions.pop(name, "unknown"), hooks, str(exc))


def _hooks_of(manager: pluggy.PluginManager, name: str) -> tuple[str, ...]:
    plugin = manager.get_plugin(name)
    callers = manager.get_hookcallers(plugin) or []
    return tuple(sorted(caller.name for caller in callers))


def _collect_dialects(
    registry: Registry, versions: dict[str, str], broken: dict[str, PluginInfo]
) -> None:
    for impl in registry.manager.hook.register_idps.get_hookimpls():
        name = impl.plugin_name
        try:
            dialects = _checked(impl.function())
        except Exception as exc:
            log.error("plugin failed in register_idps", plugin=name, error=repr(exc))
            hooks = _hooks_of(registry.manager, name)
            broken[name] = PluginInfo(name, versions.pop(name, "unknown"), hooks, repr(exc))
            registry.manager.unregister(name=name)
            continue
        for dialect in dialects:
            if dialect.name in registry.dialects:
                other = registry.dialects[dialect.name].plugin
                raise RuntimeError(
                    f"IdP {dialect.name!r} is registered by both {other!r} and {name!r}"
                )
            registry.dialects[dialect.name] = msgspec.structs.replace(dialect, plugin=name)
    _join_extended(registry)


def _join_extended(registry: Registry) -> None:
    """Give each dialect with `extends` a `normalise` that runs the extended ones' first.

    Likewise its `normalise_query`, where an extended dialect rewrites queries.
    """
    declared = dict(registry.dialects)  # every dialect's own normalise, before any joining
    for name, dialect in declared.items():
        bodies: list[NormaliseStep] = []
        queries: list[QueryStep] = []
        for base in dialect.extends:
            extended = declared.get(base)
            if extended is None or base == name:
                # Not installed (or its plugin is broken): the dialect works without its quirks.
                log.warning("dialect extension skipped", idp=name, extends=base)
                continue
            bodies.append(extended.normalise)
            if rewrites_queries(extended):
                queries.append(extended.normalise_query)
        joined = dialect
        if bodies:
            joined = msgspec.structs.replace(
                joined, normalise=_chained((*bodies, dialect.normalise))
            )
        if queries:
            own = [dialect.normalise_query] if rewrites_queries(dialect) else []
            joined = msgspec.structs.replace(joined, normalise_query=_chained((*queries, *own)))
        registry.dialects[name] = joined


def _chained(
    steps: tuple[Callable[[_T, RequestContext], _T], ...],
) -> Callable[[_T, RequestContext], _T]:
    """One step running `steps` in order, each on what the previous returned."""

    def chained(value: _T, context: RequestContext) -> _T:
        for step in steps:
            value = step(value, context)
        return value

    return chained


def _checked(result: object) -> list[Dialect]:
    """Validate what `register_idps` returned: a list of well-formed dialects."""
    if not isinstance(result, list):
        raise TypeError(f"register_idps must return a list of Dialect, got {type(result).__name__}")
    for dialect in result:
        if not isinstance(dialect, Dialect):
            raise TypeError(f"register_idps returned {type(dialect).__name__}, not a Dialect")
        if not _IDP_NAME.fullmatch(dialect.name):
            raise ValueError(f"IdP name {dialect.name!r} must be lower-case letters, digits, '_'")
        for profile_field, path in dialect.mapping.items():
            if profile_field not in PROFILE_FIELDS:
                raise ValueError(f"{dialect.name}: {profile_field!r} is not a card profile field")
            _check_path(dialect.name, path)
        for path in dialect.unmanaged:
            _check_path(dialect.name, path)
        if dialect.settings is not None and not (
            isinstance(dialect.settings, type) and issubclass(dialect.settings, msgspec.Struct)
        ):
            raise TypeError(f"{dialect.name}: settings must be a msgspec.Struct type")
    return result


def _check_path(idp: str, path: str) -> None:
    try:
        parse_path(path)
    except FilterSyntaxError as exc:
        raise ValueError(f"{idp}: {path!r} is not a SCIM attribute path: {exc}") from exc


def _load_settings(registry: Registry, environ: Mapping[str, str]) -> None:
    """Validate every plugin's settings struct from `SCIM_HUB_PLUGIN_<PLUGIN>_<FIELD>`."""
    for dialect in registry.dialects.values():
        struct = dialect.settings
        if struct is None or dialect.plugin in registry.settings:
            continue
        registry.settings[dialect.plugin] = plugin_settings(dialect.plugin, struct, environ)


def plugin_settings(plugin: str, struct: type[S], environ: Mapping[str, str]) -> S:
    """Build one plugin's settings from the environment.

    Raises:
        PluginSettingsError: a value is malformed or a required one is missing; the message
            names the plugin and the variable.
    """
    prefix = f"{PLUGIN_ENV_PREFIX}{plugin.upper()}_"
    values: dict[str, Any] = {}
    for info in msgspec.structs.fields(struct):
        raw = environ.get(prefix + info.name.upper())
        if raw is not None:
            values[info.name] = raw
    try:
        return msgspec.convert(values, struct, strict=False)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).rpartition(" - at `$.")
        name = where.rstrip("`").split(".", 1)[0].split("[", 1)[0] if where else ""
        if not where:
            text = str(exc)
            missing = re.search(r"missing required field `(\w+)`", text)
            name = missing.group(1) if missing else ""
        variable = prefix + name.upper() if name else prefix + "*"
        raise PluginSettingsError(f"plugin {plugin!r}: {variable}: {text}") from exc


def unknown_plugin_variables(
    registry: Registry, environ: Mapping[str, str]
) -> list[tuple[str, str | None]]:
    """The `SCIM_HUB_PLUGIN_*` variables in `environ` that name no setting of a loaded plugin.

    A misspelt one is otherwise ignored: the plugin runs on its default. Each comes with the
    plugin setting's variable it resembles, if one does. A broken plugin's variables are left
    out: its settings are unknown, and the plugin is reported already.
    """
    known = [
        f"{PLUGIN_ENV_PREFIX}{plugin.upper()}_{info.name.upper()}"
        for plugin, values in registry.settings.items()
        for info in msgspec.structs.fields(values)
    ]
    broken = tuple(
        f"{PLUGIN_ENV_PREFIX}{info.name.upper()}_" for info in registry.plugins if info.error
    )
    return [
        (name, resembling(name, known, PLUGIN_ENV_PREFIX))
        for name in sorted(environ)
        if name.startswith(PLUGIN_ENV_PREFIX) and name not in known and not name.startswith(broken)
    ]
