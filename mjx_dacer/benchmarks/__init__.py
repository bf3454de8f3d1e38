"""One module per benchmark; see ``mjx_dacer.bench``."""
