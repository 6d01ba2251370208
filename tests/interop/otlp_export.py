"""Exports a gauge and a monotonic sum to homepot with the OpenTelemetry SDK's OTLP/HTTP
(protobuf) exporter, exactly as an instrumented service would.

Usage: otlp_export.py BASE_URL API_KEY METRIC_PREFIX
"""
import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

base, key, prefix = sys.argv[1:4]


class RecordingExporter(OTLPMetricExporter):
    """The stock exporter, remembering whether every export succeeded."""

    failed = False

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result != MetricExportResult.SUCCESS:
            RecordingExporter.failed = True
        return result


exporter = RecordingExporter(
    endpoint=f"{base}/api/v1/metrics/otlp",
    headers={"Authorization": f"Bearer {key}"},
)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(resource=Resource.create({"service.name": "interop"}), metric_readers=[reader])
meter = provider.get_meter("homepot-interop")
meter.create_observable_gauge(
    f"{prefix}_temperature", callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]]
)
meter.create_counter(f"{prefix}_requests").add(3, {"route": "/health"})
provider.force_flush(10_000)
provider.shutdown()
sys.exit(1 if RecordingExporter.failed else 0)
