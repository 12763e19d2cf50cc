"""The fault suite's own fixtures (the shared ones come from tests/conftest.py)."""

from tests.faults.fixtures_disk import small_disk

__all__ = ["small_disk"]
