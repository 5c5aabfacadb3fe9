"""WSGI entry point for production servers: ``gunicorn -w 2 'web.wsgi:app'``.

Web workers run no scheduler; run ``huying scheduler`` (one or two) beside them.
"""
from config.settings import SettingsError, load_settings

from .app import create_app

try:
    app = create_app(load_settings())
except SettingsError as exc:  # a clear message instead of a traceback deep inside the server
    raise SystemExit(f"huying: {exc}") from None
