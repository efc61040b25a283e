"""Schemathesis hooks of the live fuzz test (loaded through SCHEMATHESIS_HOOKS).

NDJSON request bodies are sent as text. The fuzzer's own admin token (named by READINGS_FUZZ_KEEP_TOKEN) is never
revoked: the stateful phase lists the tokens and would otherwise delete it, and every later request would be a 401.
"""

import os
from typing import Any

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
KEEP = os.environ.get("READINGS_FUZZ_KEEP_TOKEN", "")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() == "DELETE" and KEEP and (case.path_parameters or {}).get("name") == KEEP:
        case.path_parameters["name"] = f"{KEEP}-other"
