"""Data that installs from the package registries: the real-face photographs (:mod:`.realfaces`)."""
