"""Where workloads live, as the access layer makes it: the Nomad namespaces jobs may use and Vault's KV
mount for their secrets. No SDK imports: the job rules (components/workloads/rules/), which the
policy pack loads without the providers' SDKs, check jobs against these."""

PLATFORM_NAMESPACE = "default"
"""Where the platform's own jobs run (Traefik, Prometheus, Grafana); built into Nomad."""
APPS_NAMESPACE = "apps"
"""Where the demo apps run; components/access/grants.py creates it."""
NOMAD_NAMESPACES = (PLATFORM_NAMESPACE, APPS_NAMESPACE)
"""The namespaces jobs may use; their tasks get a Consul role each."""
KV_MOUNT = "kv"
"""Vault's KV v2 mount for workloads; its policy grants a task read on kv/data/<namespace>/<job>[/...]
and nothing else, so a template reading elsewhere never renders."""
