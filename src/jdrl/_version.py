"""The one place for jdrl's version (the ground floor: imports nothing).

pyproject.toml reads it (``[tool.setuptools.dynamic]``), so the installed metadata
(``importlib.metadata.version("jdrl")``), ``jdrl --version``, checkpoints and reports all agree.
"""

__version__ = "0.1.0"
