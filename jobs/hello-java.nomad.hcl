# hello-java: a jar run by Nomad's java driver (the clients' OpenJDK 21), at
# hello-java.<ingress_domain> through Traefik.
#
# The jar is WireMock's standalone server (org.wiremock:wiremock-standalone on Maven Central, Apache
# 2.0, ~19.5 MB): a plain HTTP server configured by JSON files, here one stub answering GET / with a
# greeting. Nomad downloads it once per allocation and checks its SHA-256 before running it.
#
# The checksum was not computed here (no network in the build): it is the one published for this exact
# URL's file by Homebrew's wiremock-standalone formula (3.13.2) and pinned by other projects' build
# scripts, all agreeing. Maven Central artifacts never change once released; if the download fails
# the checksum, Nomad refuses to start the task.

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

variable "jar_url" {
  type        = string
  description = "URL of the jar, a fixed release (never a moving \"latest\" link)."
  default     = "https://repo1.maven.org/maven2/org/wiremock/wiremock-standalone/3.13.2/wiremock-standalone-3.13.2.jar"
}

variable "jar_sha256" {
  type        = string
  description = "SHA-256 of the file at jar_url; Nomad refuses a download that does not match."
  default     = "d097b19bd483c5038479b13a5c71e9faf8f2f5106584f0c120a7770ab0bdb367"
}

variable "greeting" {
  type        = string
  description = "What GET / answers."
  default     = "Hello from a jar run by the Nomad java driver"
}

job "hello-java" {
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  group "hello-java" {
    count = 1

    # A network namespace of the group's own (the java driver supports it: drivers/java/driver.go
    # NetIsolationModeGroup at v2.0.5): without it a java or exec task runs in the host's namespace.
    # WireMock listens on 8080 inside (NOMAD_PORT_http is the `to` port: client/taskenv/env.go
    # addGroupPort); Nomad maps a dynamic host port to it.
    network {
      mode = "bridge"
      port "http" {
        to = 8080
      }
    }

    service {
      name     = "hello-java"
      provider = "consul"
      port     = "http"
      tags     = ["traefik.enable=true"]

      check {
        name     = "hello-java-health"
        type     = "http"
        path     = "/__admin/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "wiremock" {
      driver = "java"

      artifact {
        source      = var.jar_url
        destination = "local/app.jar"
        mode        = "file"
        options {
          checksum = "sha256:${var.jar_sha256}"
        }
      }

      # WireMock serves what it finds in <root-dir>/mappings.
      template {
        destination = "local/wiremock/mappings/hello.json"
        change_mode = "restart"
        data        = <<-EOT
          {
            "request": {"method": "GET", "url": "/"},
            "response": {
              "status": 200,
              "headers": {"Content-Type": "text/plain; charset=utf-8"},
              "body": {{ env "GREETING" | toJSON }}
            }
          }
        EOT
      }

      env {
        GREETING = var.greeting
      }

      config {
        jar_path    = "local/app.jar"
        jvm_options = ["-Xms64m", "-Xmx192m"]
        args        = ["--port", "${NOMAD_PORT_http}", "--root-dir", "local/wiremock", "--disable-banner"]
      }

      resources {
        cpu    = 300
        memory = 384
      }
    }
  }
}
