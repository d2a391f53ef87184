"""Shared test configuration. The kalammodel pytest plugin (options, profiles, session fixtures) is loaded
through the ``pytest11`` entry point of the installed package; nothing else is needed here."""
