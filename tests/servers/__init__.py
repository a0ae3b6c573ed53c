"""Real server processes the integration tests run against, as context managers.

Each helper starts its server on a free loopback port and always stops it in ``finally``;
``tests/conftest.py`` exposes them as session-scoped fixtures.
"""
