"""The job rules on services: names that are DNS labels ("service-names-dns"), registration in Consul
with a health check ("services-consul-checked"), and Connect upstreams named explicitly, from which
the program derives its intentions ("mesh-upstreams-named", "mesh-no-transparent-proxy")."""

from __future__ import annotations

import json
import re

from components.workloads.job_model import _blocks, _proxies, upstream_name
from components.workloads.rule_framework import JobContext, Rule, Scope

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


# -- services --------------------------------------------------------------------------------------------------
def _service_name_dns(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if not isinstance(service.name, str) or not _DNS_LABEL.match(service.name):
        return f"service name {service.name!r} is not a DNS label — lowercase letters, digits and '-', at most 63"
    return None


def _service_consul_checked(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if service.provider != "consul":
        return f'provider "{service.provider}" — register services in Consul (provider = "consul")'
    if not service.checks:
        return "no check — Consul and Traefik route only to instances whose health checks pass"
    return None


def _mesh_upstreams_named(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    unnamed = [
        json.dumps(upstream, sort_keys=True)
        for proxy in _proxies(service)
        for upstream in _blocks(proxy, "upstreams")
        if upstream_name(upstream) is None
    ]
    if unnamed:
        return (
            f"upstream(s) {', '.join(unnamed)} without a literal destination_name — the program allows mesh calls"
            " (Consul intentions) only to upstreams named by destination_name, so every call through it would be"
            " refused; name the Consul service it calls"
        )
    return None


def _mesh_no_transparent_proxy(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if any("transparent_proxy" in proxy for proxy in _proxies(service)):
        return (
            "transparent_proxy — the program derives Consul intentions only from explicit upstreams"
            " (components/workloads/deploy.py), so under Consul's default-deny every call this service makes would be"
            ' refused; list its upstreams explicitly (proxy { upstreams { destination_name = "..." } }) instead'
        )
    return None


SERVICE_NAMES_DNS = Rule("service-names-dns", "service names are DNS labels", Scope.SERVICE, _service_name_dns)
SERVICES_CONSUL_CHECKED = Rule(
    "services-consul-checked",
    "services register in Consul with a health check",
    Scope.SERVICE,
    _service_consul_checked,
)
MESH_UPSTREAMS_NAMED = Rule(
    "mesh-upstreams-named",
    "every Connect upstream names its service (destination_name), from which the program derives intentions",
    Scope.SERVICE,
    _mesh_upstreams_named,
)
MESH_NO_TRANSPARENT_PROXY = Rule(
    "mesh-no-transparent-proxy",
    "no Connect transparent_proxy: upstreams are listed explicitly, as intentions are derived from them",
    Scope.SERVICE,
    _mesh_no_transparent_proxy,
)
