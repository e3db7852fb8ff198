# hello-vault: answers with a greeting read from Vault, at hello-vault.<ingress_domain> through
# Traefik. Seed 000's sequence, with workload identity instead of a policy named in the job:
#
#   task ── JWT (workload identity, aud vault.io) ──► Vault auth/jwt-nomad, role nomad-workloads
#   Vault ── token with policy nomad-workloads ─────► Nomad (renews it while the task runs)
#   Nomad ── template: kv/data/<namespace>/hello-vault/config ──► ECHO_TEXT ──► http-echo
#
# The policy grants read on kv/data/<namespace>/<job>[/...] only, so the secret must exist at
# kv/<namespace>/hello-vault/config with a `greeting` key; until it does, the template does not
# render and the task waits in "pending".

variable "datacenters" {
  type        = list(string)
  description = "Datacenters where the job may run (\"*\": all)."
  default     = ["*"]
}

variable "namespace" {
  type        = string
  description = "Nomad namespace of the job; also the first segment of its Vault KV path."
  default     = "apps"
}

variable "image" {
  type        = string
  description = "HTTP echo image, pinned to an exact version (reads its text from ECHO_TEXT)."
  default     = "hashicorp/http-echo:1.0.0"
}

job "hello-vault" {
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  group "hello-vault" {
    count = 1

    network {
      port "http" {
        to = 5678
      }
    }

    service {
      name     = "hello-vault"
      provider = "consul"
      port     = "http"
      tags     = ["traefik.enable=true"]

      check {
        name     = "hello-vault-http"
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "http-echo" {
      driver = "docker"

      # Workload identity: no policies and no token in the job; Vault's JWT backend gives the task
      # its default role's token. The task itself never sees it, only the template does: `env = false`
      # keeps VAULT_TOKEN out of its environment, `disable_file = true` keeps Nomad from writing it to
      # secrets/vault_token, mode 0666, otherwise (client/allocrunner/taskrunner/vault_hook.go
      # writeToken at v2.0.5; the template hook gets the token from the vault hook, not the file).
      vault {
        env          = false
        disable_file = true
        change_mode  = "restart"
      }

      config {
        image = var.image
        ports = ["http"]
        args  = ["-listen=:5678"]
      }

      template {
        destination = "secrets/greeting.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          ECHO_TEXT={{ with secret "kv/data/${var.namespace}/hello-vault/config" }}{{ .Data.data.greeting | toJSON }}{{ end }}
        EOT
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
