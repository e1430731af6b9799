"""Markers of the tests under tests/ (pyproject.toml's pytest settings stay as they are)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (tests/test_browser.py); -m 'not browser' skips it"
    )
