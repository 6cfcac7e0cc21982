"""The ``lesionxai`` command line: one module per subcommand under ``commands/``."""
