"""A short definition rendered to a complete Nomad jobspec, with the cluster's parameters filled in.

What the renderer adds to what the developer wrote (components/workloads/definitions.py):
  * the job's id `<tier letter>-<name>`, the apps namespace, the stack's datacenter, `meta.tier`
    (the site policy reads it) and `meta.source` (the definition's file);
  * a bridge network with the declared ports mapped, so the job can join the mesh;
  * a Consul service with a check: HTTP on the `http` port, TCP otherwise;
  * for the HTTP port, Traefik router tags for `https://<job id>.<ingressDomain>` on the websecure
    entrypoint only (jobs/traefik.nomad.hcl names the entrypoints);
  * a Connect sidecar when the job calls upstreams or joins the mesh, its tags its own (a sidecar
    without tags inherits its service's, and Traefik would publish Envoy's listener:
    command/agent/consul/service_client.go sidecarTagsDifferent@v2.0.5);
  * for secrets, a `vault` block for workload identity that keeps the token from the task (env = false,
    disable_file = true, as jobs/hello-vault.nomad.hcl explains) and a template that reads each from
    kv/data/<namespace>/<job>/<path> into the task's environment.
CPU and memory are left out when the definition does not ask: the site policy gives the tier's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.access.namespaces import APPS_NAMESPACE, KV_MOUNT
from components.workloads.definitions import Definition
from components.workloads.hcl_document import Document, block, dump, labelled, string

CHECK_INTERVAL = "10s"
CHECK_TIMEOUT = "3s"
SECRETS_TEMPLATE = "secrets/vault.env"


@dataclass(frozen=True)
class ClusterParameters:
    """What a rendered job gets from the stack."""

    datacenters: tuple[str, ...]
    ingress_domain: str
    namespace: str = APPS_NAMESPACE


def ingress_host(definition: Definition, cluster: ClusterParameters) -> str:
    return f"{definition.job_id}.{cluster.ingress_domain}"


def _strings(values: Sequence[str]) -> list[str]:
    return [string(v) for v in values]


def _ingress_tags(definition: Definition, cluster: ClusterParameters) -> list[str]:
    router = f"traefik.http.routers.{definition.job_id}"
    return _strings(
        [
            "traefik.enable=true",
            f"{router}.rule=Host(`{ingress_host(definition, cluster)}`)",
            f"{router}.entrypoints=websecure",
            f"{router}.tls=true",
        ]
    )


def _service(definition: Definition, cluster: ClusterParameters) -> dict:
    job_id, port = definition.job_id, definition.service_port
    check = {"type": string("http"), "path": string(definition.health)} if definition.http else {"type": string("tcp")}
    service = {
        "name": string(job_id),
        "provider": string("consul"),
        "port": string(port or ""),
        "tags": _ingress_tags(definition, cluster) if definition.http else [],
    }
    if definition.mesh:
        proxy = {
            "upstreams": [
                block({"destination_name": string(u.service), "local_bind_port": u.port}) for u in definition.upstreams
            ]
        }
        sidecar = {"tags": _strings(["mesh"]), "proxy": [block(proxy)]}
        service["connect"] = [block({"sidecar_service": [block(sidecar)]})]
    service["check"] = [
        block(
            {
                "name": string(f"{job_id}-{'http' if definition.http else 'tcp'}"),
                **check,
                "interval": string(CHECK_INTERVAL),
                "timeout": string(CHECK_TIMEOUT),
            }
        )
    ]
    return block(service)


def _secrets_template(definition: Definition, cluster: ClusterParameters) -> dict:
    lines = []
    for secret in definition.secrets:
        path = f"{KV_MOUNT}/data/{cluster.namespace}/{definition.job_id}/{secret.path}"
        lines.append(
            f'{secret.variable}={{{{ with secret "{path}" }}}}{{{{ .Data.data.{secret.key} | toJSON }}}}{{{{ end }}}}\n'
        )
    return block(
        {
            "destination": string(SECRETS_TEMPLATE),
            "env": True,
            "change_mode": string("restart"),
            "data": string("".join(lines)),
        }
    )


def _task(definition: Definition, cluster: ClusterParameters) -> dict:
    config: dict = {"image": string(definition.image), "ports": _strings(list(definition.ports))}
    if definition.command:
        config["command"] = string(definition.command[0])
        if definition.command[1:]:
            config["args"] = _strings(definition.command[1:])
    task: dict = {"driver": string("docker")}
    if definition.secrets:
        task["vault"] = [block({"env": False, "disable_file": True, "change_mode": string("restart")})]
    task["config"] = [block(config)]
    if definition.env:
        task["env"] = [block({name: string(value) for name, value in definition.env.items()})]
    if definition.secrets:
        task["template"] = [_secrets_template(definition, cluster)]
    resources = {k: v for k, v in (("cpu", definition.cpu), ("memory", definition.memory)) if v is not None}
    if resources:
        task["resources"] = [block(resources)]
    return task


def render_document(definition: Definition, cluster: ClusterParameters) -> Document:
    job_id = definition.job_id
    network: dict = {"mode": string("bridge")}
    if definition.ports:
        network["port"] = [labelled(name, {"to": number}) for name, number in definition.ports.items()]
    group: dict = {"count": definition.count, "network": [block(network)]}
    if definition.ports:
        group["service"] = [_service(definition, cluster)]
    group["task"] = [labelled(job_id, _task(definition, cluster))]
    job = {
        "namespace": string(cluster.namespace),
        "type": string("service"),
        "datacenters": _strings(cluster.datacenters),
        "meta": [block({"tier": string(definition.tier), "source": string(definition.file)})],
        "group": [labelled(job_id, group)],
    }
    return {"job": [labelled(job_id, job)]}


def render(definition: Definition, cluster: ClusterParameters) -> str:
    """The definition's complete jobspec, as HCL text."""
    return dump(render_document(definition, cluster))
