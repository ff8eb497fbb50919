#!/usr/bin/env bash
# `make k8s-check`: the manifests, checked without a cluster and without the network.
#   1. kubectl kustomize renders both overlays and the cert-manager example (into build/k8s/);
#   2. check_custom.py validates the cert-manager objects and KEDA's ScaledObject against the
#      schemas in schemas/ (kubernetes-validate has none; it would only warn), and fails on any
#      other object kubernetes-validate cannot check;
#   3. kubernetes-validate --strict accepts every other object, for the oldest and the newest
#      Kubernetes version privaudit supports, without a warning;
#   4. checkov finds no failed check in the manifests and the Dockerfiles, other than those
#      skipped where they occur, with the reason (checkov.io/skip annotations, checkov:skip comments).
# Usage: deploy/k8s/check.sh VENV, where VENV holds deploy/k8s/requirements-check.txt.
set -euo pipefail

venv=$1
cd "$(dirname "$0")/../.."
out=build/k8s
# 1.30: the oldest Kubernetes these manifests are written for; 1.37: the newest schema known here.
kubernetes_versions=(1.30.0 1.37.0)

if ! command -v kubectl >/dev/null; then
    echo "k8s-check: kubectl is not installed; install it (it includes kustomize) and retry" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out"
for overlay in cpu gpu; do
    kubectl kustomize "deploy/k8s/overlays/$overlay" > "$out/$overlay.yaml"
done
kubectl kustomize deploy/k8s/examples/cert-manager > "$out/cert-manager.yaml"
cp deploy/k8s/examples/*.yaml "$out/"
echo "k8s-check: rendered $(cd "$out" && ls -- *.yaml | tr '\n' ' ')"

"$venv/bin/python" deploy/k8s/check_custom.py "$out" "$out/core"

for version in "${kubernetes_versions[@]}"; do
    # --quiet prints only failures and warnings; a warning (e.g. no schema for a kind) fails too.
    if ! report=$("$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" \
            "$out"/core/*.yaml) || [ -n "$report" ]; then
        echo "$report" >&2
        exit 1
    fi
    echo "k8s-check: every other object is valid Kubernetes $version (strict)"
done

# Offline: no policy download, no update check, no guideline mapping.
CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=true \
    "$venv/bin/checkov" --skip-download --quiet --compact \
    --framework kubernetes dockerfile \
    --file "$out"/*.yaml services/*/Dockerfile
echo "k8s-check: checkov found no unskipped failure"
