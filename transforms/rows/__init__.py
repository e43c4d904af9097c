"""Expressions over rows, and the steps that use them: selection, labels and categories, event variables."""
