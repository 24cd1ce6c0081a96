"""Calls to the application's write handler."""
