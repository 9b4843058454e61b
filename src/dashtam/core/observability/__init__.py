"""Observability: per-application Prometheus metrics, HTTP and job instrumentation, `/metrics`.

Services record through the small functions of `dashtam.core.observability.metrics`
(`metrics.token_refresh("ok")`, `metrics.sync_finished(...)`); they never hold a registry.
"""
