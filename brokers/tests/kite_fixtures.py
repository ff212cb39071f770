"""The official Kite mock payloads, read from the one copy the sandbox serves (brokers/sandbox/fixtures)."""

from brokers.sandbox.market import load_json_fixture


def kite_fixture(name: str) -> dict:
    return load_json_fixture(name)


def kite_error(message: str, error_type: str) -> dict:
    return {"status": "error", "message": message, "error_type": error_type, "data": None}
