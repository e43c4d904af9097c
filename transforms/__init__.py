"""Beam transforms of the conversion, one concern per module."""
