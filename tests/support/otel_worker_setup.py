"""Imported by a worker (``--import otel_worker_setup``): sets the worker's tracer
provider, exporting each finished span as a JSON line to the file named by
``GFT_SPANS_FILE``, for the test to read."""

from __future__ import annotations

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

_out = open(os.environ["GFT_SPANS_FILE"], "a", buffering=1)
_provider = TracerProvider()
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(
            out=_out,
            formatter=lambda span: json.dumps(json.loads(span.to_json())) + "\n",
        )
    )
)
trace.set_tracer_provider(_provider)
