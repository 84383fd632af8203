"""Fixtures for the registry tests: Debian's ``docker-registry`` on 127.0.0.1 in each of its
four forms (helpers the tests import are in :mod:`tests.registry.helpers`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.registry.helpers import FORMS, Pki, Registry, make_pki, start_registry


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test CA, the server certificate, the token-signing key and the htpasswd file (made
    once per session with ``openssl`` and ``htpasswd``)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start(tmp_path: Path, pki: Pki) -> Iterator[Callable[[str], Registry]]:
    """Start a registry of a given form under ``tmp_path``; every one is stopped at the end."""
    started: list[Registry] = []

    def start_one(form: str) -> Registry:
        reg = start_registry(tmp_path / f"registry-{form}-{len(started)}", form, pki)
        started.append(reg)
        return reg

    yield start_one
    for reg in started:
        reg.stop()


@pytest.fixture(params=FORMS)
def registry(request: pytest.FixtureRequest, start: Callable[[str], Registry]) -> Registry:
    """A registry in each form: plain HTTP, TLS, htpasswd basic auth, bearer tokens."""
    return start(str(request.param))


@pytest.fixture
def plain_registry(start: Callable[[str], Registry]) -> Registry:
    """A plain-HTTP registry with no authentication."""
    return start("http")
