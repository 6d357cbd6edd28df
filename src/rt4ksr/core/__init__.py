"""The bottom layer: configuration, user errors, atomic files, optional dependencies, the deployment scenario and the
measurement core (stats). Everything else imports from here; this imports nothing of rt4ksr's above it."""
