"""Top-level pytest configuration. Component fixtures live next to the tests that use them
(tests/<area>/conftest.py) and in tests/support/, so areas stay independent."""
