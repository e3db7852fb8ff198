# countdash: seed 003's Consul service mesh example. count-dashboard calls count-api through Envoy
# sidecars with mutual TLS; Consul intentions (made by the Pulumi program) allow exactly
# count-dashboard -> count-api.
#
# count-api publishes no port: its network namespace is reachable only through its sidecar, which
# accepts mesh (mTLS) connections the intentions allow, plus the /health expose path Nomad adds for
# the Consul check. Upstreams are declared in the job (no transparent proxy), as seed 003 suggests
# when Consul DNS should not be exposed to workloads.
#
# The dashboard reaches Traefik through its own mapped port, not through the mesh: Traefik routes
# to the address and port the dashboard service registers (host address, dynamic port -> 9002). A
# Connect-native route (Traefik's consulCatalog.connectAware) would make Traefik a mesh member with
# its own service identity, leaf certificates and an intention traefik -> count-dashboard; the
# dashboard is public anyway, so that only adds moving parts. What the mesh protects is the API.

variable "datacenters" {
  type        = list(string)
  description = "Datacenters where the job may run (\"*\": all)."
  default     = ["*"]
}

variable "namespace" {
  type        = string
  description = "Nomad namespace of the job."
  default     = "apps"
}

variable "api_image" {
  type        = string
  description = "Counter API image, pinned (HashiCorp publishes this demo under v-tags only; amd64)."
  default     = "hashicorpdev/counter-api:v3"
}

variable "dashboard_image" {
  type        = string
  description = "Counter dashboard image, pinned (HashiCorp publishes this demo under v-tags only; amd64)."
  default     = "hashicorpdev/counter-dashboard:v3"
}

job "countdash" {
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  group "count-api" {
    count = 1

    network {
      mode = "bridge"
    }

    service {
      name     = "count-api"
      provider = "consul"
      # The port the API listens on inside the namespace; Envoy forwards mesh traffic to it.
      port = "9001"

      connect {
        sidecar_service {}
      }

      # Consul's agent cannot reach into the namespace: `expose` opens /health alone through the
      # sidecar, on a port Nomad allocates.
      check {
        name     = "count-api-health"
        type     = "http"
        path     = "/health"
        expose   = true
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "api" {
      driver = "docker"

      config {
        image = var.api_image
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }

  group "count-dashboard" {
    count = 1

    network {
      mode = "bridge"
      port "http" {
        to = 9002
      }
    }

    service {
      name     = "count-dashboard"
      provider = "consul"
      port     = "http"
      tags     = ["traefik.enable=true"]

      connect {
        # Tags of its own: a sidecar without tags inherits its service's (Consul does;
        # command/agent/consul/service_client.go sidecarTagsDifferent at v2.0.5), and Traefik would
        # publish Envoy's mesh-only listener beside the dashboard.
        sidecar_service {
          tags = ["mesh"]
          proxy {
            upstreams {
              destination_name = "count-api"
              local_bind_port  = 8080
            }
          }
        }
      }

      check {
        name     = "count-dashboard-http"
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "dashboard" {
      driver = "docker"

      env {
        # 127.0.0.1:8080 in the group's namespace: the sidecar's listener for count-api.
        COUNTING_SERVICE_URL = "http://${NOMAD_UPSTREAM_ADDR_count_api}"
      }

      config {
        image = var.dashboard_image
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
