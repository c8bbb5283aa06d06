#!/usr/bin/env bash
# Installs the real components the test-suite runs against (RECIPES.md): PostgreSQL, Slurm with
# munge, two docker-registry servers and skopeo; buildah, podman and debootstrap for the container
# image test (tests/deploy/). kubectl is not installed here: Debian's kubernetes-client conflicts
# with the kubectl the machines ship (RECIPES.md). Idempotent and quiet; needs root (CI is root).
# Nothing here starts a service: the pytest fixtures start and stop what they need on 127.0.0.1.
set -euo pipefail
pkgs=(postgresql slurmctld slurmd slurm-client munge docker-registry skopeo apache2-utils buildah podman debootstrap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "system deps missing (${missing[*]}) and not root: the tests that need them will be skipped" >&2
  exit 0
fi
echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts daemons on install where it can; the tests start their own on other ports.
for svc in slurmctld slurmd munge postgresql docker-registry; do
  (service "$svc" stop >/dev/null 2>&1 || true)
done
