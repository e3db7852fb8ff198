# Prometheus: scrapes the Nomad agents, the local Consul agent and every Consul service tagged
# `prometheus`; served at prometheus.<ingress_domain> through Traefik (admin source ranges only).
#
# Discovery goes through the local Consul agent's HTTPS API (127.0.0.1:8501, cluster CA from the
# "cluster-ca" host volume) with the Consul token Nomad derives from this task's workload identity;
# Prometheus sends it from a file as `Authorization: Bearer`, which Consul accepts, and re-reads the
# file on every request. The file is a copy the task's user can read (the template below): Nomad
# writes secrets/consul_token 0640 as root (client/allocrunner/taskrunner/consul_hook.go at v2.0.5),
# which nobody (65534) cannot. Like every task's, the token is also in the environment Nomad gives
# the task (CONSUL_TOKEN, CONSUL_HTTP_TOKEN), which `docker inspect` shows to root on the node.
#
# What this needs that is not verified here (no cluster in the tests):
# - Consul ACLs. The task's token has the role nomad-default-tasks (components/access.py: policies
#   nomad-tasks, read on services, nodes and KV, for the catalog and health reads of
#   consul_sd_configs; and nomad-platform-tasks, agent:read, for /v1/agent/metrics). The datacenter
#   is named explicitly anyway, so discovery does not depend on /v1/agent/self.
# - Nomad's /v1/metrics needs no ACL token (Nomad API docs: "ACL Required: none"); the agents' HTTPS
#   API does not ask for a client certificate (verify_https_client = false). Targets are checked
#   against the names in the agents' certificates (server.<region>.nomad, client.<region>.nomad),
#   since a shared client certificate names no node address.
# - Consul servers' own metrics are not scraped: their API requires a client certificate, which
#   tasks do not get. Only the Consul agent on Prometheus's node is scraped.
# - prom/prometheus runs as nobody; the TSDB is in the allocation's shared data directory, which
#   Nomad creates world-writable.

variable "datacenters" {
  type        = list(string)
  description = "Datacenters where Prometheus may run (\"*\": all)."
  default     = ["*"]
}

variable "image" {
  type        = string
  description = "Prometheus image, pinned to an exact version."
  default     = "prom/prometheus:v3.5.0"
}

variable "retention" {
  type        = string
  description = "How long Prometheus keeps samples (--storage.tsdb.retention.time)."
  default     = "7d"
}

variable "scrape_interval" {
  type        = string
  description = "How often every target is scraped."
  default     = "15s"
}

job "prometheus" {
  namespace   = "default"
  type        = "service"
  datacenters = var.datacenters

  group "prometheus" {
    count = 1

    network {
      port "http" {}
    }

    # The TSDB survives restarts and, when it can, rescheduling onto another node.
    ephemeral_disk {
      size    = 2048
      sticky  = true
      migrate = true
    }

    volume "cluster-ca" {
      type      = "host"
      source    = "cluster-ca"
      read_only = true
    }

    service {
      name     = "prometheus"
      provider = "consul"
      port     = "http"
      # `prometheus`: Prometheus scrapes itself like any other tagged service.
      tags = [
        "prometheus",
        "traefik.enable=true",
        "traefik.http.routers.prometheus.middlewares=admin-only@consulcatalog",
      ]

      check {
        name     = "prometheus-ready"
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "prometheus" {
      driver = "docker"
      # The image's own user (prom/prometheus: USER nobody), stated as a uid: the job rules require
      # one for every host-network task.
      user = "65534:65534"

      meta {
        host_network_reason = "the local Consul agent's API listens on the host's loopback only"
      }

      # A Consul token from this task's workload identity, in secrets/consul_token and CONSUL_TOKEN.
      consul {}

      # The token again, readable by the task's user: a template renders it from CONSUL_TOKEN, which
      # the consul hook puts in the task environment before the template hook runs (v2.0.5
      # client/allocrunner/taskrunner/task_runner_hooks.go; uid/gid/perms: api/tasks.go Template).
      template {
        destination = "secrets/prometheus-consul-token"
        data        = "{{ env \"CONSUL_TOKEN\" }}"
        uid         = 65534
        gid         = 65534
        perms       = "0400"
        change_mode = "restart"
      }

      volume_mount {
        volume      = "cluster-ca"
        destination = "/cluster-ca"
        read_only   = true
      }

      config {
        image = var.image
        network_mode = "host"
        args = [
          "--config.file=/local/prometheus.yml",
          "--storage.tsdb.path=/alloc/data/prometheus",
          "--storage.tsdb.retention.time=${var.retention}",
          "--web.listen-address=${NOMAD_ADDR_http}",
        ]
      }

      template {
        destination   = "local/prometheus.yml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          global:
            scrape_interval: ${var.scrape_interval}
            evaluation_interval: ${var.scrape_interval}

          scrape_configs:
            # Nomad servers and clients, as Nomad registers them in Consul (tag "http": the HTTPS API).
            - job_name: nomad-servers
              scheme: https
              metrics_path: /v1/metrics
              params:
                format: [prometheus]
              tls_config:
                ca_file: /cluster-ca/ca.pem
                server_name: server.{{ env "NOMAD_REGION" }}.nomad
              consul_sd_configs:
                - server: 127.0.0.1:8501
                  scheme: https
                  datacenter: {{ env "NOMAD_DC" }}
                  authorization:
                    credentials_file: /secrets/prometheus-consul-token
                  tls_config:
                    ca_file: /cluster-ca/ca.pem
                  services: [nomad]
                  tags: [http]
              relabel_configs:
                - source_labels: [__meta_consul_node]
                  target_label: instance

            - job_name: nomad-clients
              scheme: https
              metrics_path: /v1/metrics
              params:
                format: [prometheus]
              tls_config:
                ca_file: /cluster-ca/ca.pem
                server_name: client.{{ env "NOMAD_REGION" }}.nomad
              consul_sd_configs:
                - server: 127.0.0.1:8501
                  scheme: https
                  datacenter: {{ env "NOMAD_DC" }}
                  authorization:
                    credentials_file: /secrets/prometheus-consul-token
                  tls_config:
                    ca_file: /cluster-ca/ca.pem
                  services: [nomad-client]
                  tags: [http]
              relabel_configs:
                - source_labels: [__meta_consul_node]
                  target_label: instance

            # The Consul agent on this node (agent:read: the role nomad-default-tasks, see the top).
            - job_name: consul-agent
              scheme: https
              metrics_path: /v1/agent/metrics
              params:
                format: [prometheus]
              authorization:
                credentials_file: /secrets/prometheus-consul-token
              tls_config:
                ca_file: /cluster-ca/ca.pem
              static_configs:
                - targets: [127.0.0.1:8501]
                  labels:
                    instance: {{ env "node.unique.name" }}

            # Every Consul service tagged "prometheus", over plain HTTP on its registered port; the
            # service's `metrics_path` meta overrides /metrics.
            - job_name: consul-services
              consul_sd_configs:
                - server: 127.0.0.1:8501
                  scheme: https
                  datacenter: {{ env "NOMAD_DC" }}
                  authorization:
                    credentials_file: /secrets/prometheus-consul-token
                  tls_config:
                    ca_file: /cluster-ca/ca.pem
                  tags: [prometheus]
              relabel_configs:
                - source_labels: [__meta_consul_service]
                  target_label: job
                - source_labels: [__meta_consul_node]
                  target_label: node
                - source_labels: [__meta_consul_service_metadata_metrics_path]
                  regex: (.+)
                  target_label: __metrics_path__
        EOT
      }

      resources {
        cpu    = 300
        memory = 512
      }
    }
  }
}
