"""Localization: the first divergent operation, the graph census, frozen arguments, graph races, the
picture and the minimal repro. ``localize`` runs after the verdict; see ``localize.py``."""
