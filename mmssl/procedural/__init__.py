"""Procedurally generated built-in data shared by several modalities (see :mod:`.shapes`)."""
