# Grafana: a provisioned Prometheus data source and dashboards for Nomad, Consul and Traefik, at
# grafana.<ingress_domain> through Traefik (admin source ranges only).
#
# Anonymous visitors are read-only viewers and nobody can log in: no login form, no basic auth, no
# initial admin user, so there is no default password to leak. Everything shown is provisioned from
# this file; to edit dashboards interactively, run Grafana elsewhere against the same Prometheus.
#
# The data source is the healthy "prometheus" service from Consul's catalog (a template, re-rendered
# and Grafana restarted when Prometheus moves), read with the task's workload-identity Consul token.

variable "datacenters" {
  type        = list(string)
  description = "Datacenters where Grafana may run (\"*\": all)."
  default     = ["*"]
}

variable "image" {
  type        = string
  description = "Grafana image, pinned to an exact version."
  default     = "grafana/grafana:12.1.0"
}

variable "ingress_domain" {
  type        = string
  description = "DNS suffix of the routes (Grafana's root URL is http://grafana.<ingress_domain>/)."
  default     = "hashistack.test"
}

job "grafana" {
  namespace   = "default"
  type        = "service"
  datacenters = var.datacenters

  group "grafana" {
    count = 1

    network {
      port "http" {
        to = 3000
      }
    }

    service {
      name     = "grafana"
      provider = "consul"
      port     = "http"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.grafana.middlewares=admin-only@consulcatalog",
      ]

      check {
        name     = "grafana-health"
        type     = "http"
        path     = "/api/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "grafana" {
      driver = "docker"

      # A Consul token from this task's workload identity, for the data source template's lookup.
      consul {}

      config {
        image = var.image
        ports = ["http"]
      }

      env {
        GF_PATHS_PROVISIONING                      = "/local/provisioning"
        GF_SERVER_ROOT_URL                         = "http://grafana.${var.ingress_domain}/"
        GF_AUTH_ANONYMOUS_ENABLED                  = "true"
        GF_AUTH_ANONYMOUS_ORG_ROLE                 = "Viewer"
        GF_AUTH_DISABLE_LOGIN_FORM                 = "true"
        GF_AUTH_BASIC_ENABLED                      = "false"
        GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION = "true"
        GF_USERS_ALLOW_SIGN_UP                     = "false"
        GF_ANALYTICS_REPORTING_ENABLED             = "false"
        GF_ANALYTICS_CHECK_FOR_UPDATES             = "false"
      }

      template {
        destination = "local/provisioning/datasources/prometheus.yaml"
        change_mode = "restart"
        data        = <<-EOT
          apiVersion: 1
          datasources:
            - name: Prometheus
              uid: prometheus
              type: prometheus
              access: proxy
              isDefault: true
              editable: false
              url: {{ range $i, $s := service "prometheus" }}{{ if eq $i 0 }}http://{{ $s.Address }}:{{ $s.Port }}{{ end }}{{ end }}
        EOT
      }

      template {
        destination = "local/provisioning/dashboards/hashistack.yaml"
        change_mode = "restart"
        data        = <<-EOT
          apiVersion: 1
          providers:
            - name: hashistack
              folder: hashistack
              type: file
              disableDeletion: true
              allowUiUpdates: false
              options:
                path: /local/dashboards
        EOT
      }

      # The dashboards are plain JSON: their legends use Grafana's own {{label}} syntax, so the
      # template delimiters are moved out of the way and nothing in them is rendered.
      template {
        destination     = "local/dashboards/nomad.json"
        change_mode     = "restart"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-EOT
          {
            "uid": "hashistack-nomad",
            "title": "Nomad",
            "tags": ["hashistack"],
            "timezone": "browser",
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "panels": [
              {
                "id": 1, "type": "stat", "title": "Nomad agents up",
                "gridPos": {"h": 4, "w": 6, "x": 0, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (job) (up{job=~'nomad-.*'})", "legendFormat": "{{job}}"}
                ]
              },
              {
                "id": 2, "type": "timeseries", "title": "Running allocations per client",
                "gridPos": {"h": 8, "w": 18, "x": 6, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (instance) (nomad_client_allocations_running)", "legendFormat": "{{instance}}"}
                ]
              },
              {
                "id": 3, "type": "timeseries", "title": "Client memory: allocated and free to schedule",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "decmbytes"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum(nomad_client_allocated_memory)", "legendFormat": "allocated"},
                  {"refId": "B", "expr": "sum(nomad_client_unallocated_memory)", "legendFormat": "unallocated"}
                ]
              },
              {
                "id": 4, "type": "timeseries", "title": "Client host CPU",
                "gridPos": {"h": 8, "w": 12, "x": 12, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "percent"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "avg by (instance) (nomad_client_host_cpu_total)", "legendFormat": "{{instance}}"}
                ]
              },
              {
                "id": 5, "type": "timeseries", "title": "Running allocations per job",
                "gridPos": {"h": 8, "w": 24, "x": 0, "y": 16},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "max by (exported_job) (nomad_nomad_job_summary_running)", "legendFormat": "{{exported_job}}"}
                ]
              }
            ]
          }
        EOT
      }

      template {
        destination     = "local/dashboards/consul.json"
        change_mode     = "restart"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-EOT
          {
            "uid": "hashistack-consul",
            "title": "Consul",
            "tags": ["hashistack"],
            "timezone": "browser",
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "panels": [
              {
                "id": 1, "type": "stat", "title": "Consul agent up",
                "gridPos": {"h": 4, "w": 6, "x": 0, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "up{job='consul-agent'}", "legendFormat": "{{instance}}"}
                ]
              },
              {
                "id": 2, "type": "timeseries", "title": "RPC requests to the servers",
                "gridPos": {"h": 8, "w": 18, "x": 6, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (instance) (rate(consul_client_rpc[5m]))", "legendFormat": "{{instance}}"},
                  {"refId": "B", "expr": "sum by (instance) (rate(consul_client_rpc_failed[5m]))", "legendFormat": "failed {{instance}}"}
                ]
              },
              {
                "id": 3, "type": "timeseries", "title": "Agent memory",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "bytes"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "consul_runtime_alloc_bytes", "legendFormat": "{{instance}}"}
                ]
              },
              {
                "id": 4, "type": "timeseries", "title": "Agent goroutines",
                "gridPos": {"h": 8, "w": 12, "x": 12, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "consul_runtime_num_goroutines", "legendFormat": "{{instance}}"}
                ]
              },
              {
                "id": 5, "type": "timeseries", "title": "Services scraped through the catalog",
                "gridPos": {"h": 8, "w": 24, "x": 0, "y": 16},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (job) (up{job!~'nomad-.*|consul-agent'})", "legendFormat": "{{job}}"}
                ]
              }
            ]
          }
        EOT
      }

      template {
        destination     = "local/dashboards/traefik.json"
        change_mode     = "restart"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-EOT
          {
            "uid": "hashistack-traefik",
            "title": "Traefik",
            "tags": ["hashistack"],
            "timezone": "browser",
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "panels": [
              {
                "id": 1, "type": "timeseries", "title": "Requests per entrypoint",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (entrypoint) (rate(traefik_entrypoint_requests_total[5m]))", "legendFormat": "{{entrypoint}}"}
                ]
              },
              {
                "id": 2, "type": "timeseries", "title": "Requests per service and status",
                "gridPos": {"h": 8, "w": 12, "x": 12, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (service, code) (rate(traefik_service_requests_total[5m]))", "legendFormat": "{{service}} {{code}}"}
                ]
              },
              {
                "id": 3, "type": "timeseries", "title": "Service latency p95",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "histogram_quantile(0.95, sum by (service, le) (rate(traefik_service_request_duration_seconds_bucket[5m])))", "legendFormat": "{{service}}"}
                ]
              },
              {
                "id": 4, "type": "timeseries", "title": "Share of 5xx responses",
                "gridPos": {"h": 8, "w": 12, "x": 12, "y": 8},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum(rate(traefik_service_requests_total{code=~'5..'}[5m])) / sum(rate(traefik_service_requests_total[5m]))", "legendFormat": "5xx"}
                ]
              },
              {
                "id": 5, "type": "timeseries", "title": "Open connections",
                "gridPos": {"h": 8, "w": 24, "x": 0, "y": 16},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
                "targets": [
                  {"refId": "A", "expr": "sum by (entrypoint) (traefik_open_connections)", "legendFormat": "{{entrypoint}}"}
                ]
              }
            ]
          }
        EOT
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
