# An OpenTelemetry-instrumented app for tests/otlp.rs (the Python SDK, opentelemetry-sdk with
# opentelemetry-exporter-otlp-proto-http, default settings: the endpoint and service name come
# from OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME, as a user sets them).
#   otel_app.py sdk N                  N traces: a server span with a sqlite client child; prints
#                                      each trace id (32 hex digits); the first root is an error
#   otel_app.py stackstate-request OUT writes an ExportTraceServiceRequest as the StackState Lambda
#                                      layer sends to /open-telemetry (built with the SDK's
#                                      protobuf classes)
import sys


def sdk(n):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("otel_app", "1.0")
    for i in range(n):
        attrs = {"http.method": "GET", "http.route": "/items/{id}", "http.status_code": 200}
        with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER, attributes=attrs) as root:
            child_attrs = {
                "db.system": "sqlite",
                "db.statement": "SELECT * FROM items WHERE id = 'item-secret-%d'" % i,
                "db.rows": i,
                "ratio": 0.5,
                "cached": False,
            }
            with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT, attributes=child_attrs):
                pass
            if i == 0:
                root.set_status(Status(StatusCode.ERROR, "boom"))
            print(format(root.get_span_context().trace_id, "032x"), flush=True)
    if not provider.force_flush(10000):
        sys.exit(2)
    provider.shutdown()


def stackstate_request(path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kv(k, v):
        if isinstance(v, bool):
            return KeyValue(key=k, value=AnyValue(bool_value=v))
        if isinstance(v, int):
            return KeyValue(key=k, value=AnyValue(int_value=v))
        if isinstance(v, float):
            return KeyValue(key=k, value=AnyValue(double_value=v))
        return KeyValue(key=k, value=AnyValue(string_value=v))

    trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    lambda_id = bytes.fromhex("eee19b7ec3c1b174")
    s3_id = bytes.fromhex("1111111111111111")
    http_id = bytes.fromhex("2222222222222222")
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    t0 = 1_700_000_000_000_000_000
    lam = Span(trace_id=trace_id, span_id=lambda_id, parent_span_id=bytes.fromhex("0102030405060708"),
               name="orders", kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=t0, end_time_unix_nano=t0 + 9_000_000,
               attributes=[kv("faas.id", arn), kv("cloud.account.id", "123456789012"), kv("faas.coldstart", True)])
    s3 = Span(trace_id=trace_id, span_id=s3_id, parent_span_id=lambda_id, name="S3.PutObject",
              kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=t0 + 1_000_000, end_time_unix_nano=t0 + 5_000_000,
              attributes=[kv("aws.service.identifier", "s3"), kv("aws.operation", "PutObject"),
                          kv("aws.region", "eu-west-1"), kv("aws.request.bucket", "orders-bucket"),
                          kv("retries", 2), kv("ratio", 1.5)])
    http = Span(trace_id=trace_id, span_id=http_id, parent_span_id=s3_id, name="HTTPS PUT",
                kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=t0 + 2_000_000, end_time_unix_nano=t0 + 4_000_000,
                attributes=[kv("http.status_code", 404), kv("http.method", "PUT"),
                            kv("http.url", "https://orders-bucket.s3.eu-west-1.amazonaws.com/k")])
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv("service.name", "orders")]),
        scope_spans=[
            ScopeSpans(scope=InstrumentationScope(name="@opentelemetry/instrumentation-aws-sdk", version="0.8.0"), spans=[s3]),
            ScopeSpans(scope=InstrumentationScope(name="@opentelemetry/instrumentation-http", version="0.27.0"), spans=[http]),
            ScopeSpans(scope=InstrumentationScope(name="@opentelemetry/instrumentation-aws-lambda", version="0.27.0"), spans=[lam]),
        ])])
    with open(path, "wb") as f:
        f.write(req.SerializeToString())


if __name__ == "__main__":
    if sys.argv[1] == "sdk":
        sdk(int(sys.argv[2]))
    else:
        stackstate_request(sys.argv[2])
