# Container image, included by the Makefile. No container registry is needed: the Debian base
# image is made here with debootstrap (from the Debian mirror) and imported into podman.
#
#   make image        build $(IMAGE) from the Dockerfile on the local base $(BASE_IMAGE)
#   make image-test   run it: keys init, /healthz, HEALTHCHECK, C-ECHO, a study end to end, drain
#   make image-clean  remove both images and the cached base tarball
#
# The base tarball is cached in build/ (debootstrap takes a minute or two); delete it, or run
# `make image-clean`, to pick up Debian point releases. The build fetches Debian packages and
# PyPI wheels; behind a TLS-intercepting proxy BUILD_CA names its CA bundle (default: the
# host's trust store, handed to pip as a build secret, never stored in a layer).
# Extra podman flags for sandboxes (runc, ulimits) come from docker/podman-flags.sh.

IMAGE ?= localhost/dicom-gateway:latest
DEBIAN_SUITE ?= bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR ?= http://deb.debian.org/debian-security
BASE_IMAGE ?= localhost/dicom-gateway-base:$(DEBIAN_SUITE)
BASE_TARBALL := build/debian-$(DEBIAN_SUITE)-python.tar
BASE_ROOTFS := build/debian-$(DEBIAN_SUITE)-rootfs
BASE_PACKAGES := python3,python3-venv
BUILD_CA ?= $(firstword $(wildcard $(PIP_CERT) /etc/ssl/certs/ca-certificates.crt))
PODMAN := podman
IMAGE_APT_PACKAGES := podman buildah debootstrap
# runc: for hosts whose cgroups crun refuses (see docker/podman-flags.sh).
IMAGE_APT_PACKAGES += $(if $(wildcard /sys/fs/cgroup/unified),runc)

.PHONY: image image-tools image-base image-test image-clean

image-tools:
	@missing=""; \
	for p in $(IMAGE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then echo "install:$$missing (no apt-get here)"; exit 1; fi; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing system packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Debian minbase + python3: what debian:bookworm-slim would give, made from the mirror. Sources
# include -updates and -security so that the image's own apt-get gets current packages; like
# the slim images, documentation other than copyright files is left out.
$(BASE_TARBALL): | image-tools
	@sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; set -e; \
	$$sudo rm -rf $(BASE_ROOTFS); mkdir -p $(dir $@); \
	echo "debootstrap $(DEBIAN_SUITE) (minbase + $(BASE_PACKAGES)) from $(DEBIAN_MIRROR)"; \
	$$sudo debootstrap --variant=minbase --include=$(BASE_PACKAGES) \
	  $(DEBIAN_SUITE) $(BASE_ROOTFS) $(DEBIAN_MIRROR) >$(BASE_ROOTFS).log 2>&1 \
	  || { tail -20 $(BASE_ROOTFS).log; exit 1; }; \
	printf '%s\n' \
	  "deb $(DEBIAN_MIRROR) $(DEBIAN_SUITE) main" \
	  "deb $(DEBIAN_MIRROR) $(DEBIAN_SUITE)-updates main" \
	  "deb $(DEBIAN_SECURITY_MIRROR) $(DEBIAN_SUITE)-security main" \
	  | $$sudo tee $(BASE_ROOTFS)/etc/apt/sources.list >/dev/null; \
	printf '%s\n' \
	  'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
	  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
	  | $$sudo tee $(BASE_ROOTFS)/etc/dpkg/dpkg.cfg.d/docker-excludes >/dev/null; \
	$$sudo rm -rf $(BASE_ROOTFS)/var/cache/apt/archives/*.deb $(BASE_ROOTFS)/var/lib/apt/lists/* \
	  $(BASE_ROOTFS)/var/log/*.log $(BASE_ROOTFS)/var/cache/debconf/*-old; \
	$$sudo tar --numeric-owner -C $(BASE_ROOTFS) -cf $@.tmp .; \
	$$sudo rm -rf $(BASE_ROOTFS); \
	mv $@.tmp $@; \
	echo "base tarball: $@ ($$(du -h $@ | cut -f1))"

# Imported again when the tarball is newer than the image or the image is gone.
image-base: $(BASE_TARBALL) | image-tools
	@stamp=$(BASE_TARBALL).imported; \
	if ! $(PODMAN) image exists $(BASE_IMAGE) || [ $(BASE_TARBALL) -nt $$stamp ]; then \
	  $(PODMAN) import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
	    $(BASE_TARBALL) $(BASE_IMAGE) >/dev/null && touch $$stamp && \
	  echo "base image: $(BASE_IMAGE)"; \
	fi

# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
image: image-base
	$(PODMAN) build $$(docker/podman-flags.sh) --format docker \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  $(if $(BUILD_CA),--secret id=build-ca$(comma)src=$(BUILD_CA)) \
	  --tag $(IMAGE) --file Dockerfile .
	@echo "image: $(IMAGE)"

image-test: system | image-tools
	@$(PODMAN) image exists $(IMAGE) || { echo "no image $(IMAGE): run make image"; exit 1; }
	docker/image-test.sh $(IMAGE)

image-clean:
	-$(PODMAN) rmi $(IMAGE) $(BASE_IMAGE)
	rm -f $(BASE_TARBALL) $(BASE_TARBALL).imported

comma := ,
