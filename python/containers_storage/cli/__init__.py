"""The ``containers-storage`` command line."""
