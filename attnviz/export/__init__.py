"""Figures and arrays written to disk; used by the app's export actions and the headless CLI."""
