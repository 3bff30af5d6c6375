"""Subcommands of the ``odenets`` command line, one module each (see `odenets.cli`)."""
