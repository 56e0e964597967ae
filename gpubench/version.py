"""The version of gpubench, in a module of its own: every layer can read it without loading the
package's public API (``gpubench/__init__.py`` loads that lazily)."""

__version__ = "0.1.0"
