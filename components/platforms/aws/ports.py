"""The ports of the cluster's agents and of the ingress: what the security groups admit (firewall.py)
and what the load balancers forward and health-check (load_balancers.py)."""

from __future__ import annotations

NOMAD_HTTP_PORT = 4646
NOMAD_RPC_PORT = 4647
NOMAD_SERF_PORT = 4648
CONSUL_RPC_PORT = 8300
CONSUL_SERF_LAN_PORT = 8301
CONSUL_HTTPS_PORT = 8501
VAULT_API_PORT = 8200
VAULT_CLUSTER_PORT = 8201
SSH_PORT = 22
API_PORTS = (NOMAD_HTTP_PORT, CONSUL_HTTPS_PORT, VAULT_API_PORT)
INGRESS_PORTS = (80, 443)
# Nomad's default dynamic port range: Connect sidecars and the ingress's backends listen there.
DYNAMIC_PORTS = (20000, 32000)
