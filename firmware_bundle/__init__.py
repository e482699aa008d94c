"""Signed over-the-air model bundles: build, sign, verify, install with rollback."""
