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
    # Traefik runs as nobody, which may not bind ports below 1024 in the host's network namespace
    # (Docker lowers net.ipv4.ip_unprivileged_port_start only in a container's own namespace:
    # moby/moby daemon/oci_linux.go, WithCommonOptions; NET_BIND_SERVICE in cap_add reaches no
    # non-root process without file capabilities, which the image's binary has none of:
    # traefik/traefik-library-image#50). It listens on 8080 and 8443; each client redirects 80 and
    # 443 there (cloudinit/hashistack-ingress.nft) and reserves 80 and 443 in Nomad.
    network {
      port "http" {
        static = 8080
      }
      port "https" {
        static = 8443
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
      # Not root: with the host's network, root could bind any port and open raw sockets on the
      # node's interfaces. The job rules require a numeric uid for every host-network task.
      user = "65534:65534"

      meta {
        host_network_reason = "the local Consul agent's API listens on the host's loopback only"
      }

      # A Consul token from this task's workload identity (role nomad-default-tasks: read services,
      # nodes and KV). Nomad writes it to secrets/consul_token (0640, root: nobody cannot read it)
      # and sets CONSUL_TOKEN in the task's environment (client/allocrunner/taskrunner/consul_hook.go
      # at v2.0.5), which is where Traefik takes it from.
      consul {}

      volume_mount {
        volume      = "cluster-ca"
        destination = "/cluster-ca"
        read_only   = true
      }

      config {
        image = var.image
        network_mode = "host"
        # Traefik takes its static configuration from one source; here, the environment. Its
        # consulCatalog client does not read CONSUL_TOKEN itself, so the wrapper copies it; the token
        # is on no command line (`ps`). Like every task's, it is in the container's environment, which
        # `docker inspect` shows to root on the node.
        entrypoint = ["/bin/sh", "-c"]
        args = [
          "set -eu; TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN=\"$CONSUL_TOKEN\"; export TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN; exec traefik",
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
