# Traefik: the ingress on every client, on the host's ports 80 and 443. It routes
# `<service>.<ingress_domain>` to every Consul service tagged `traefik.enable=true`, found through the
# local Consul agent's HTTPS API (127.0.0.1:8501, cluster CA from the "cluster-ca" host volume) with
# the Consul token Nomad derives from this task's workload identity (the `consul` block).
#
# The dashboard is at traefik.<ingress_domain>, behind the "admin-only" middleware defined here and
# used by the Prometheus and Grafana jobs too.

variable "datacenters" {
  type        = list(string)
  description = "Datacenters whose clients run Traefik (\"*\": all)."
  default     = ["*"]
}

variable "image" {
  type        = string
  description = "Traefik image, pinned to an exact version (v3: `ipallowlist`, TRAEFIK_* environment configuration)."
  default     = "traefik:v3.4.3"
}

variable "ingress_domain" {
  type        = string
  description = "DNS suffix of the routes: a service is served at <service>.<ingress_domain>."
  default     = "hashistack.test"
}

# WARNING: on AWS the ingress load balancer is open to the internet and keeps the client's address;
# the dashboard, Prometheus and Grafana answer only these ranges. Widen with care: none of them
# asks for a password (Grafana is read-only for anonymous viewers, Prometheus has no login at all).
variable "admin_source_ranges" {
  type        = string
  description = "Comma-separated CIDRs allowed to reach the admin UIs (the \"admin-only\" middleware)."
  default     = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.1/32"
}

job "traefik" {
  namespace   = "default"
  type        = "system"
  datacenters = var.datacenters

  group "traefik" {
    network {
      port "http" {
        static = 80
      }
      port "https" {
        static = 443
      }
      # Traefik's own entrypoint: /ping (health) and /metrics (Prometheus); the API stays internal.
      port "admin" {}
    }

    volume "cluster-ca" {
      type      = "host"
      source    = "cluster-ca"
      read_only = true
    }

    service {
      name     = "traefik"
      provider = "consul"
      port     = "admin"
      tags = [
        "prometheus",
        "traefik.enable=true",
        "traefik.http.routers.dashboard.rule=Host(`traefik.${var.ingress_domain}`)",
        "traefik.http.routers.dashboard.service=api@internal",
        "traefik.http.routers.dashboard.middlewares=admin-only@consulcatalog",
        "traefik.http.middlewares.admin-only.ipallowlist.sourcerange=${var.admin_source_ranges}",
      ]

      check {
        name     = "traefik-ping"
        type     = "http"
        path     = "/ping"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "traefik" {
      driver = "docker"

      # A Consul token from this task's workload identity (role nomad-default-tasks: read services,
      # nodes and KV), written by Nomad to secrets/consul_token and CONSUL_TOKEN.
      consul {}

      volume_mount {
        volume      = "cluster-ca"
        destination = "/cluster-ca"
        read_only   = true
      }

      config {
        image = var.image
        # The local Consul agent listens on the host's loopback only.
        network_mode = "host"
        # Traefik takes its static configuration from one source; here, the environment. The token is
        # read from the secrets file into Traefik's environment, so it is on no command line (`ps`,
        # `docker inspect`). Traefik's consulCatalog client does not read CONSUL_TOKEN itself.
        entrypoint = ["/bin/sh", "-c"]
        args = [
          "set -eu; TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN=\"$(cat \"$NOMAD_SECRETS_DIR/consul_token\")\"; export TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN; exec traefik",
        ]
      }

      env {
        TRAEFIK_GLOBAL_CHECKNEWVERSION    = "false"
        TRAEFIK_GLOBAL_SENDANONYMOUSUSAGE = "false"
        TRAEFIK_LOG_LEVEL                 = "INFO"
        TRAEFIK_ACCESSLOG                 = "true"

        TRAEFIK_ENTRYPOINTS_WEB_ADDRESS       = ":${NOMAD_PORT_http}"
        TRAEFIK_ENTRYPOINTS_WEBSECURE_ADDRESS = ":${NOMAD_PORT_https}"
        # WARNING: no certificate resolver is configured (`.test` names cannot get public
        # certificates), so 443 serves Traefik's self-signed default certificate.
        TRAEFIK_ENTRYPOINTS_WEBSECURE_HTTP_TLS = "true"
        TRAEFIK_ENTRYPOINTS_TRAEFIK_ADDRESS    = "${NOMAD_ADDR_admin}"

        TRAEFIK_API                = "true"
        TRAEFIK_API_DASHBOARD      = "true"
        TRAEFIK_PING               = "true"
        TRAEFIK_METRICS_PROMETHEUS = "true"

        TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_ADDRESS    = "127.0.0.1:8501"
        TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_SCHEME     = "https"
        TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TLS_CA     = "/cluster-ca/ca.pem"
        TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_DATACENTER = "${node.datacenter}"
        TRAEFIK_PROVIDERS_CONSULCATALOG_EXPOSEDBYDEFAULT    = "false"
        TRAEFIK_PROVIDERS_CONSULCATALOG_DEFAULTRULE         = "Host(`{{ normalize .Name }}.${var.ingress_domain}`)"
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
