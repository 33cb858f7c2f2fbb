#!/usr/bin/env bash
# A GitHub-hosted runner has ~14 GB free; the training image unpacks to ~9 GB (torch and its CUDA wheels) and
# buildx keeps a copy of its layers while `load: true` hands it to Docker. Drop the preinstalled toolchains the
# image jobs never use (~25 GB). Used by ci.yml and container.yml.
set -euo pipefail
df -h / | tail -n 1
sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /usr/local/.ghcup /opt/hostedtoolcache/CodeQL \
    /usr/local/share/boost /usr/share/swift
sudo docker image prune --all --force >/dev/null
df -h / | tail -n 1
