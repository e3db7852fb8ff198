"""The job rules' messages, whole: what an operator reads when `pulumi up` stops on a job. The rule
tests (tests/workloads/test_job_rules.py CASES) check that each failing example is caught and its message names the
problem; this file keeps every message's full text, so a change to what a message says is a change
someone chose (update the text here with it).
"""

from __future__ import annotations

import pytest
from test_job_rules import CASES, job_hcl, write
from test_jobs import ALLOWED

from components.workloads.job_model import load_job
from components.workloads.job_rules import check_job

MESSAGES = {
    "images-pinned-0": 'image "nginx:latest" — pin an exact version tag',
    "images-pinned-1": 'image "nginx" has no tag (Nomad would pull "latest") — pin an exact version tag',
    "images-pinned-2": 'image "registry.local:5000/team/app" has no tag (Nomad would pull "latest") — pin an exact version tag',
    "images-pinned-3": 'image "traefik:v3": tag "v3" is not a full version, so the image behind it moves — pin MAJOR.MINOR.PATCH (an optional leading "v" and a suffix such as "-alpine") or a digest (@sha256:...), or add the repository to UNVERSIONED_IMAGES in components/workloads/rules/images.py with the reason it has no version tags',
    "images-pinned-4": 'image "nginx:1.27": tag "1.27" is not a full version, so the image behind it moves — pin MAJOR.MINOR.PATCH (an optional leading "v" and a suffix such as "-alpine") or a digest (@sha256:...), or add the repository to UNVERSIONED_IMAGES in components/workloads/rules/images.py with the reason it has no version tags',
    "images-pinned-5": 'image "example/demo-api:v3": tag "v3" is not a full version, so the image behind it moves — pin MAJOR.MINOR.PATCH (an optional leading "v" and a suffix such as "-alpine") or a digest (@sha256:...), or add the repository to UNVERSIONED_IMAGES in components/workloads/rules/images.py with the reason it has no version tags',
    "images-pinned-6": "image \"example/app:1.2.3+build\" is not a valid image reference (Nomad's docker driver rejects it): a lowercase repository, then :<tag> of letters, digits, '_', '.' or '-', or @sha256:<digest>",
    "resources-set-7": "no resources block — set cpu (or cores) and memory",
    "resources-set-8": "resources sets no memory — set cpu (or cores) and memory",
    "namespace-allowed-9": 'namespace "prod" is not allowed — use one of: apps, default',
    "namespace-allowed-10": 'no namespace — set one of: apps, default (Nomad would use "default")',
    "no-raw-exec-11": 'driver "raw_exec" runs the task unisolated as root — use exec, docker or java',
    "task-sandboxed-12": 'privileged = true — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-13": 'volumes entry "/:/host": source "/" is a host path outside the allocation directory — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-14": 'volumes entry "../../etc:/etc": source "../../etc" is a host path outside the allocation directory — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-15": 'volumes entry "data" is not <source>:<destination>[:<mode>] — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-16": 'volumes entry "${NOMAD_ALLOC_DIR}/data:/data": source "${NOMAD_ALLOC_DIR}/data" is interpolated by Nomad at run time, which the rules cannot resolve (and ${NOMAD_ALLOC_DIR} and the like are absolute container paths there, which Nomad rejects) — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-17": 'volume_driver = "local" (a Docker volume, outside the allocation) — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-18": 'mount of type "bind": source "/etc" is a host path outside the allocation directory — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-19": 'mount of type "volume" (cache), a Docker volume — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-20": 'mount of type "bind": source "secrets/../../../etc" is a host path outside the allocation directory — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-21": 'cap_add = ["sys_admin"] — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-22": 'devices (host devices) — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-23": 'pid_mode = "host"; cgroupns = "host" — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-24": 'userns_mode = "host"; uts_mode = "host" — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-25": 'security_opt "seccomp=unconfined"; security_opt "apparmor:unconfined"; security_opt "label=disable" — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-26": 'pid_mode = "host"; ipc_mode = "host" — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "task-sandboxed-27": 'cap_add = ["net_raw"] — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)',
    "host-network-exception-28": "network_mode = \"host\": no meta host_network_reason saying why it needs the host's network; user None is not a numeric non-root uid (root in the host's network namespace can bind any port and open raw sockets on the node's interfaces) — or leave network_mode unset",
    "host-network-exception-29": "network_mode = \"host\": user 'nobody' is not a numeric non-root uid (root in the host's network namespace can bind any port and open raw sockets on the node's interfaces) — or leave network_mode unset",
    "host-network-exception-30": "network_mode = \"host\": user '0:1000' is not a numeric non-root uid (root in the host's network namespace can bind any port and open raw sockets on the node's interfaces) — or leave network_mode unset",
    "host-network-exception-31": 'network_mode = "host": no meta host_network_reason saying why it needs the host\'s network — or leave network_mode unset',
    "host-network-exception-32": 'driver "java" in a group whose network mode is "host" runs in the host\'s network namespace: no meta host_network_reason saying why it needs the host\'s network; user None is not a numeric non-root uid (root in the host\'s network namespace can bind any port and open raw sockets on the node\'s interfaces) — or give the group network { mode = "bridge" }',
    "host-network-exception-33": 'driver "exec" in a group whose network mode is "host" runs in the host\'s network namespace: no meta host_network_reason saying why it needs the host\'s network; user None is not a numeric non-root uid (root in the host\'s network namespace can bind any port and open raw sockets on the node\'s interfaces) — or give the group network { mode = "bridge" }',
    "host-network-exception-34": 'driver "exec" in a group whose network mode is "driver" runs in the host\'s network namespace: no meta host_network_reason saying why it needs the host\'s network; user None is not a numeric non-root uid (root in the host\'s network namespace can bind any port and open raw sockets on the node\'s interfaces) — or give the group network { mode = "bridge" }',
    "host-network-exception-35": 'driver "java" in a group whose network mode is "host" runs in the host\'s network namespace: user \'nobody\' is not a numeric non-root uid (root in the host\'s network namespace can bind any port and open raw sockets on the node\'s interfaces) — or give the group network { mode = "bridge" }',
    "vault-workload-identity-36": "vault block sets policies (the legacy token workflow, removed in Nomad 1.10) — use a vault block without policies (workload identity) and let templates read secrets",
    "vault-workload-identity-37": "env sets VAULT_TOKEN — use a vault block without policies (workload identity) and let templates read secrets",
    "vault-workload-identity-38": 'template "local/t" reads the Vault token — use a vault block without policies (workload identity) and let templates read secrets',
    "vault-workload-identity-39": 'template "local/x" reads the Vault token — use a vault block without policies (workload identity) and let templates read secrets',
    "vault-workload-identity-40": 'template "local/x" reads the Vault token — use a vault block without policies (workload identity) and let templates read secrets',
    "vault-workload-identity-41": 'template "local/t" reads the Vault token — use a vault block without policies (workload identity) and let templates read secrets',
    "vault-workload-identity-42": "env COPY, TOKEN copies ${VAULT_TOKEN} — use a vault block without policies (workload identity) and let templates read secrets",
    "vault-paths-scoped-43": "template reads kv/data/default/grafana/admin, outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render",
    "vault-paths-scoped-44": 'template reads kv/data/default/grafana/admin (secret "kv/default/grafana/admin"), outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render',
    "vault-paths-scoped-45": "template reads kv/metadata/apps/demo/config, outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render",
    "vault-paths-scoped-46": 'template lists kv/metadata/default (secrets "kv/metadata/default/"), outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render',
    "vault-paths-scoped-47": 'template lists kv/metadata/data/apps/demo (secrets "kv/data/apps/demo"), outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render',
    "vault-paths-scoped-48": 'template writes kv/data/apps/demo/config (secret "kv/data/apps/demo/config" with key=value arguments), outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render',
    "vault-paths-scoped-49": "template reads kv/data/apps/demo/../../default/grafana, outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render",
    "vault-paths-scoped-50": 'template "local/x": {{ with secret (printf "kv/data/%s/config" (env "NOMAD_NAMESPACE")) }}: the Vault path is not a string literal, so the rules cannot check where it reads — write it as one (secret "kv/data/<namespace>/<job>/...")',
    "vault-paths-scoped-51": 'template "local/x": {{ with "kv/data/apps/demo/config" | secret }}: the Vault path is not a string literal, so the rules cannot check where it reads — write it as one (secret "kv/data/<namespace>/<job>/...")',
    "vault-paths-scoped-52": "template reads kv/data/default/grafana/admin, outside kv/data/apps/demo[/...] (read) and kv/metadata/apps/... (list) — the nomad-workloads Vault policy grants a task read on its own namespace and job and list on its namespace only, so the template would never render",
    "artifacts-checksummed-53": 'artifact https://example.com/app.jar has no checksum — pin it with options { checksum = "sha256:..." } or ?checksum=sha256:... in its URL',
    "artifacts-checksummed-54": 'artifact https://example.com/app.jar?archive=false has no checksum — pin it with options { checksum = "sha256:..." } or ?checksum=sha256:... in its URL',
    "artifacts-checksummed-55": 'artifact https://example.com/app.jar?checksum=md5:abababababababababababababababab: the URL\'s checksum parameter: checksum type "md5" — use sha256 or sha512 (md5 and sha1 collisions can be made)',
    "artifacts-checksummed-56": 'artifact https://example.com/app.jar?checksum=file:https://example.com/SHA256SUMS: the URL\'s checksum parameter: checksum "file:https://example.com/SHA256SUMS" is fetched from a URL at download time, so it pins nothing in the job',
    "artifacts-checksummed-57": 'artifact https://example.com/app.jar?checksum=abababababababababababababababababababab: the URL\'s checksum parameter: checksum "abababababababababababababababababababab" is not "<type>:<hex>"',
    "artifacts-checksummed-58": 'artifact https://example.com/app.jar: options.checksum: checksum "abababababababababababababababababababababababababababababababab" is not "<type>:<hex>"',
    "artifacts-checksummed-59": 'artifact https://example.com/app.jar: options.checksum: checksum "sha256:abc" is not a sha256 digest (64 hex digits)',
    "service-names-dns-60": "service name 'Web_Front' is not a DNS label — lowercase letters, digits and '-', at most 63",
    "services-consul-checked-61": 'provider "nomad" — register services in Consul (provider = "consul")',
    "services-consul-checked-62": "no check — Consul and Traefik route only to instances whose health checks pass",
    "mesh-upstreams-named-63": 'upstream(s) {"destination_peer": "other", "local_bind_port": 8080} without a literal destination_name — the program allows mesh calls (Consul intentions) only to upstreams named by destination_name, so every call through it would be refused; name the Consul service it calls',
    "mesh-no-transparent-proxy-64": 'transparent_proxy — the program derives Consul intentions only from explicit upstreams (components/workloads/deploy.py), so under Consul\'s default-deny every call this service makes would be refused; list its upstreams explicitly (proxy { upstreams { destination_name = "..." } }) instead',
    "variables-documented-65": "variable(s) size without type or description",
    "vault-template-safe-66": "job ID \"demo+1\" holds '+' or '*', which Vault refuses in a templated policy path (permission denied from Vault 2.0.1): the task would get no secret — rename the job without them",
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_each_failing_example_says_all_of_it(tmp_path, case):
    rule, failing = CASES[int(case.rsplit("-", 1)[1])][:2]
    assert case.rsplit("-", 1)[0] == rule
    (first, *_) = check_job(load_job(write(tmp_path, failing)), ALLOWED)
    assert first.message == MESSAGES[case]


def test_every_case_has_its_message():
    assert sorted(MESSAGES) == sorted(f"{case[0]}-{i}" for i, case in enumerate(CASES))


def test_every_volume_is_judged_not_only_the_first(tmp_path):
    job = job_hcl(config='image = "nginx:1.27.0"\n        volumes = ["local/config:/etc/app", "/etc:/host-etc"]')
    (violation,) = check_job(load_job(write(tmp_path, job)), ALLOWED)
    assert (
        violation.rule == "task-sandboxed" and "/etc" in violation.message and "local/config" not in violation.message
    )
