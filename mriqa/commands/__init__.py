"""Sub-commands of the ``mriqa`` CLI; see ``mriqa/cli.py``."""
