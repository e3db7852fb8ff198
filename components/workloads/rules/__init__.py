"""The job rules, one module per concern, each `Rule` next to its check and helpers:

- declarations: the job's namespace, its variables' types and descriptions, every task's cpu and memory;
- images: container images pinned (a full version tag or a digest);
- isolation: no raw_exec, docker/exec/java tasks in their sandbox, the host-network exception;
- templates: Go templates (consul-template's language) lexed into actions and function calls;
- vault: Vault only through workload identity, and templates reading only the job's own KV paths;
- artifacts: artifacts pinned by a sha256 or sha512 checksum;
- services: service names, Consul registration and checks, Connect upstreams.

components/workloads/job_rules.py lists them, in order, in `RULES`.
"""
