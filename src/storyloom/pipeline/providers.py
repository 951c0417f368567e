"""Provider instances by name, built from the current config (rebuilt when the config changes)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from storyloom.config import Config
from storyloom.pipeline.llm.base import Provider
from storyloom.pipeline.llm.offline import OfflineProvider

PROVIDER_NAMES = ("offline", "openai")


class Providers:
    """`providers("offline")` → a provider for the config in force; cached per config object."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config
        self._cache: dict[tuple[int, str], Provider] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Provider:
        cfg = self._config()
        key = (id(cfg), name)
        with self._lock:
            provider = self._cache.get(key)
            if provider is None:
                provider = build_provider(name, cfg)
                self._cache = {k: v for k, v in self._cache.items() if k[0] == id(cfg)}
                self._cache[key] = provider
            return provider


def build_provider(name: str, cfg: Config) -> Provider:
    if name == "offline":
        return OfflineProvider(
            cfg.llm.faults,
            scenes_per_chapter=cfg.pipeline.scenes_per_chapter,
            chapters=cfg.pipeline.chapters,
            lore_status=cfg.llm.offline_lore_status,
        )
    if name == "openai":
        # deferred: the OpenAI SDK takes seconds to import, and every CLI command and offline run would pay it
        from storyloom.pipeline.llm.openai_provider import OpenAIProvider

        return OpenAIProvider(
            base_url=cfg.llm.base_url,
            model=cfg.llm.model,
            api_key_env=cfg.llm.api_key_env,
            timeout=cfg.llm.timeout.total_seconds(),
            max_retries=cfg.llm.max_retries,
        )
    raise ValueError(f"unknown provider {name!r}: use offline or openai")
