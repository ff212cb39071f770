"""The official Kite mock payloads (shared/fixtures/kite beside the repository)."""

import json
from pathlib import Path

KITE_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "kite"


def kite_fixture(name: str) -> dict:
    return json.loads((KITE_FIXTURES / name).read_text())


def kite_error(message: str, error_type: str) -> dict:
    return {"status": "error", "message": message, "error_type": error_type, "data": None}
