"""Thin adapters over the operating system: one concern per module, errors turned into SvctlError."""
