"""Fail fast when the Hugging Face Hub cannot be reached.

Without a network, ``from_pretrained`` and ``load_dataset`` retry for close to a minute before they
give up. One TCP connection to the Hub endpoint, with a short timeout, tells the same thing in well
under a second; when it fails, the Hub libraries are put into their offline mode (local cache only)
for the call, so a cached model or data set still loads and a missing one fails at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from typing import Iterator
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 2.0
TRUE = {"1", "ON", "YES", "TRUE"}


def offline_requested() -> bool:
    return any(os.environ.get(k, "").upper() in TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                                 "HF_DATASETS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub endpoint (``HF_ENDPOINT``, default huggingface.co) opens in time."""
    if offline_requested():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Inside: the Hub libraries use their local cache only if the Hub cannot be reached. Yields reachability."""
    if hub_reachable():
        yield True
        return
    modules = [m for m in (sys.modules.get("huggingface_hub.constants"), sys.modules.get("datasets.config")) if m]
    saved = [(m, m.HF_HUB_OFFLINE) for m in modules if hasattr(m, "HF_HUB_OFFLINE")]
    for module, _ in saved:
        module.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        for module, value in saved:
            module.HF_HUB_OFFLINE = value
