"""The chaos injector's command line (the flags themselves live in :mod:`hif.chaos`)."""
