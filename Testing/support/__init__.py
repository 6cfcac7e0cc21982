"""Test support shipped with the tests, not with the installed package (Playwright viewer harness)."""
