"""The HTTP service and its load test, over the same request path `mmctr bench` times.

ranker.py    the served model (a run's serving copy), swapped whole on reload; scoring one request,
             or several micro-batched into one forward
app.py       the ASGI app (Starlette): /v1/rank, /v1/search, /healthz, /metrics, /admin/reload;
             request validation that names the field at fault
metrics.py   Prometheus text exposition, written by hand
loadtest.py  a keep-alive HTTP client that replays valid-split requests at fixed concurrencies;
             its summary (JSON) and latency-vs-load plot
"""
