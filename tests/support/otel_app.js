// An OpenTelemetry-instrumented Node app for tests/otlp.rs: @opentelemetry/sdk-trace-node with the
// OTLP exporter named by argv[2] (`proto`: @opentelemetry/exporter-trace-otlp-proto, `json`:
// @opentelemetry/exporter-trace-otlp-http), default settings (the endpoint comes from
// OTEL_EXPORTER_OTLP_ENDPOINT). Sends argv[3] traces of a server span with a client child and
// prints each trace id; export failures go to stderr (the diag logger at ERROR) and exit 2.
const api = require('@opentelemetry/api');
const { NodeTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-node');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OTLPTraceExporter } = require(
  process.argv[2] === 'json' ? '@opentelemetry/exporter-trace-otlp-http' : '@opentelemetry/exporter-trace-otlp-proto');

api.diag.setLogger(new api.DiagConsoleLogger(), api.DiagLogLevel.ERROR);
const n = Number(process.argv[3]);
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
});
const tracer = provider.getTracer('otel_app_js', '1.0.0');
for (let i = 0; i < n; i++) {
  const root = tracer.startSpan('GET /items/{id}', {
    kind: api.SpanKind.SERVER,
    attributes: { 'http.method': 'GET', 'http.route': '/items/{id}', 'http.status_code': 200 },
  });
  const ctx = api.trace.setSpan(api.ROOT_CONTEXT, root);
  const child = tracer.startSpan('SELECT items', {
    kind: api.SpanKind.CLIENT,
    attributes: { 'db.system': 'sqlite', 'db.statement': `SELECT * FROM items WHERE id = 'item-secret-${i}'`, 'db.rows': i, ratio: 0.5 },
  }, ctx);
  child.end();
  if (i === 0) root.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' });
  root.end();
  console.log(root.spanContext().traceId);
}
provider.forceFlush()
  .then(() => provider.shutdown())
  .then(() => process.exit(0), (e) => { console.error('export failed:', e); process.exit(2); });
