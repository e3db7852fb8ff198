# hello-docker: a container that answers every request with a line of text (hashicorp/http-echo),
# at hello-docker.<ingress_domain> through Traefik.

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

variable "image" {
  type        = string
  description = "HTTP echo image, pinned to an exact version."
  default     = "hashicorp/http-echo:1.0.0"
}

variable "instances" {
  type        = number
  description = "How many copies run; Traefik balances across the healthy ones."
  default     = 2
}

variable "text" {
  type        = string
  description = "What the service answers."
  default     = "Hello from a Docker container scheduled by Nomad"
}

job "hello-docker" {
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  group "hello-docker" {
    count = var.instances

    network {
      port "http" {
        to = 5678
      }
    }

    service {
      name     = "hello-docker"
      provider = "consul"
      port     = "http"
      tags     = ["traefik.enable=true"]

      check {
        name     = "hello-docker-http"
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "http-echo" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http"]
        args  = ["-listen=:5678", "-text=${var.text}"]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
