# Debian package (issue 7): make deb [ARCH=arm64], make deb-test [ARCH=arm64]. See docs/install.md.
#   deb-wheels  the only step that needs the network: pinned runtime wheels for ARCH (+ setuptools to build the
#               project wheel) into .cache/wheelhouse/ARCH. debian/rules then builds offline from it.
#   deb         dist/liveness-edge_<version>_<ARCH>.deb (dpkg-buildpackage in a staging copy of the tree)
#   deb-test    lintian, then install / upgrade / remove / purge in a clean Debian 12 root (tools/deb/test.py)
ARCH       ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_CPU     = $(if $(filter arm64,$(ARCH)),aarch64,$(if $(filter amd64,$(ARCH)),x86_64,$(error ARCH=$(ARCH): amd64 or arm64)))
WHEELHOUSE ?= .cache/wheelhouse/$(ARCH)
DEB_OUT    ?= dist
DEB_PYVER  := 3.11
# The runtime pins: constraints.txt minus the test-only tools.
DEB_RUNTIME := ai-edge-litert av numpy opencv-python-headless bottle waitress PyYAML prometheus-client sdnotify

# Debian tools the targets need that a fresh machine lacks (dpkg-dev, fakeroot and python3-pip are in the base image,
# but installing them is harmless); installed only when one is missing.
DEB_TOOLS := debhelper dpkg-dev fakeroot lintian debootstrap python3-pip
ifeq ($(ARCH),arm64)
DEB_TOOLS += qemu-user-static binfmt-support
endif

.PHONY: deb deb-deps deb-wheels deb-test deb-clean

deb-deps:
	$(call apt_ensure,$(DEB_TOOLS))

$(WHEELHOUSE)/.complete: constraints.txt pyproject.toml tools/deb/platforms.sh | $(STAMP)
	mkdir -p $(WHEELHOUSE)
	# sdnotify is published as an sdist only: make its (pure-Python) wheel here, then everything else as binaries.
	$(PIP) wheel -q --no-deps -c constraints.txt -w $(WHEELHOUSE) sdnotify
	$(PIP) download -q -d $(WHEELHOUSE) --only-binary=:all: --implementation cp --python-version $(DEB_PYVER) \
	    --abi cp$(subst .,,$(DEB_PYVER)) $$(tools/deb/platforms.sh $(DEB_CPU)) --find-links $(WHEELHOUSE) \
	    -c constraints.txt $(DEB_RUNTIME) 'setuptools>=77'
	touch $@

deb-wheels: $(WHEELHOUSE)/.complete

deb: deb-deps deb-wheels
	tools/deb/build.sh $(ARCH) $(WHEELHOUSE) $(DEB_OUT)

deb-test: deb-deps
	/usr/bin/python3 tools/deb/test.py $(ARCH) $(WHEELHOUSE) $(DEB_OUT)

deb-clean:
	rm -rf $(DEB_OUT)/liveness-edge_* $(DEB_OUT)/.stage.* .cache/wheelhouse .cache/deb
