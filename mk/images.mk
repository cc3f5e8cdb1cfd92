# mk/images.mk: the lab's Docker images (included by the top-level Makefile;
# also usable alone: make -f mk/images.mk images). Run from the repo root.
#
#   make base-image   mplab/base:$(VERSION), debootstrap + docker import (offline)
#   make images       mplab/node:$(VERSION) and mplab/services:$(VERSION)
#   make node-image | services-image | images-clean
#
# Each image is rebuilt only when the hash of its inputs (Dockerfile, staged
# files, firmware.elf for node, the base image ID) differs from the image's
# label mplab.inputs. MPLAB_FORCE=1 rebuilds anyway.

VERSION        ?= $(shell cat VERSION 2>/dev/null || echo dev)
BASE_SUITE     ?= trixie
BASE_IMAGE_DEFAULT := mplab/base:$(VERSION)
BASE_IMAGE     ?= $(BASE_IMAGE_DEFAULT)
NODE_IMAGE     ?= mplab/node:$(VERSION)
SERVICES_IMAGE ?= mplab/services:$(VERSION)
FIRMWARE_ELF   ?= firmware/build/firmware.elf
DOCKER         ?= docker
# docker compose v2 if present, else docker-compose v1
DOCKER_COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)

# compose reads MPLAB_VERSION (its own default is the version at release time)
export MPLAB_VERSION ?= $(VERSION)

.PHONY: base-image images node-image services-image images-clean

# Only the default base image is ours to build; any other (e.g.
# debian:trixie-slim) is pulled by images/build-image.sh if missing.
ifeq ($(BASE_IMAGE),$(BASE_IMAGE_DEFAULT))
_MPLAB_BASE_DEP := base-image
endif

base-image:
	@scripts/ensure-docker.sh
	@DOCKER="$(DOCKER)" images/base/build.sh $(BASE_IMAGE_DEFAULT) $(BASE_SUITE)

images: node-image services-image

node-image: $(_MPLAB_BASE_DEP)
	@test -f $(FIRMWARE_ELF) || { echo "images: $(FIRMWARE_ELF) is missing: run 'make firmware' first (or pass FIRMWARE_ELF=...)" >&2; exit 1; }
	@scripts/ensure-docker.sh
	@DOCKER="$(DOCKER)" images/build-image.sh $(NODE_IMAGE) $(BASE_IMAGE) images/node/Dockerfile \
	    tap-net/mplab-node tap-net/mplab-qmp images/node/mplab-netem.c $(FIRMWARE_ELF):firmware.elf

services-image: $(_MPLAB_BASE_DEP)
	@scripts/ensure-docker.sh
	@DOCKER="$(DOCKER)" images/build-image.sh $(SERVICES_IMAGE) $(BASE_IMAGE) images/services/Dockerfile \
	    images/services/entrypoint.sh images/services/daemon.sh \
	    images/services/health.py images/services/peers.py

images-clean:
	-@$(DOCKER) image rm $(NODE_IMAGE) $(SERVICES_IMAGE) 2>/dev/null || true
