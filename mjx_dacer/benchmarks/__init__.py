"""One module per benchmark; see ``mjx_dacer.cli.bench``."""
