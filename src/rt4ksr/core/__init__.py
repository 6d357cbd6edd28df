"""The bottom layer: configuration, user errors, atomic files, optional dependencies and the deployment scenario.
Everything else imports from here; this imports nothing of rt4ksr's above it."""
