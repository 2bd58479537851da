"""Shared test setup: headless pygame and a fixed thread count so CPU tests are repeatable."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Many small tensor ops: on a busy 2-core box, thread hand-offs dominate them."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def headless_app(tmp_path):
    """Factory for headless client Apps whose files (screenshots, recordings, sessions) land
    in tmp_path/{shots,recs,sessions}; every App, and its source if closable, is closed after."""
    import io

    import pygame

    from worldplay.client.app import App
    from worldplay.config import ClientConfig, ControlsConfig
    from worldplay.sources.capabilities import close_source

    apps = []

    def make(source, image, controls=ControlsConfig(), booth=False, **client):
        client.setdefault("screenshot_dir", str(tmp_path / "shots"))
        client.setdefault("recording_dir", str(tmp_path / "recs"))
        client.setdefault("session_dir", str(tmp_path / "sessions"))
        app = App(source, ClientConfig(**client), controls, image, headless=True, booth=booth,
                  out=io.StringIO())
        apps.append(app)
        pygame.event.clear()         # nothing left over from an earlier test
        return app

    yield make
    for a in apps:
        a.close()
        close_source(a.source)
