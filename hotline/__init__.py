"""Composition: settings, event bus, call session, server start-up and the `hotline` CLI."""
