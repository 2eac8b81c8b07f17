"""Verb implementations: the CLI layer. Each function is ``verb(context, args) -> exit code``.

They may print (they are part of the CLI); the logic they call lives in pure or adapter modules.
"""
