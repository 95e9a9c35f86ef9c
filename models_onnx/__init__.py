"""The backbone zoo's model cards (JSON), shipped as package data."""
