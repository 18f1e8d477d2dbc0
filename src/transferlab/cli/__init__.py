"""The command line: every ``transferlab`` command, each a thin layer over library calls.

The top wing of the package: nothing outside ``transferlab.cli`` imports it (``tests/test_architecture.py``).
"""

from transferlab.cli.main import main

__all__ = ["main"]
