"""Builds the real service stack on a given database for tests (local object store in a temp dir)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from server.config import Settings
from server.db.engine import Database
from server.db.migrate import upgrade
from server.service.bundle import Services
from server.storage.port import ObjectStore
from stack.wiring import build_services, build_store

TEST_SECRET = "test-secret-" + "x" * 40


@dataclass
class Stack:
    settings: Settings
    db: Database
    store: ObjectStore
    services: Services


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    base = Settings(data_dir=data_dir).changed(
        jwt_secret=TEST_SECRET,
        callback_secret="callback-" + "c" * 40,
        admin_token="admin-" + "a" * 40,
        starting_credits=100,
        lease_s=30.0,
        retry_backoff_s=0.05,
        max_image_pixels=40_000_000,
        operator_port=0,  # off unless a test asks: child processes would share the default port
    )
    return base.changed(**overrides)


def make_stack(database_url: str, data_dir: Path, **overrides: object) -> Stack:
    settings = make_settings(data_dir, database_url=database_url, **overrides)
    db = Database.from_url(database_url)
    upgrade(db.engine)
    store = build_store(settings)
    return Stack(settings, db, store, build_services(settings, db, store))


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()
