#!/usr/bin/env bash
# The Secrets the secure component mounts, made with openssl on your machine (without cert-manager):
#
#   deploy/k8s/make-secrets.sh [--tokens-only] DIR CLIENT... | kubectl apply -f -
#
# DIR keeps the material (created mode 700; keep it private and out of git): a private CA
# (ca.crt, ca.key), a certificate and key per service, the internal token, and one client token
# per CLIENT name (clients/CLIENT.token). Files already in DIR are kept, so running it again with
# a new CLIENT adds that client's token and leaves the others, the CA and the certificates alone;
# delete a file to make it anew. Standard output gets five Secrets of namespace privaudit:
#   privaudit-client-tokens    tokens: every client's token, one a line, each after a comment naming it
#   privaudit-internal-token   token: the orchestrator's token for the workers and the reporter
#   privaudit-<service>-tls    tls.crt, tls.key, ca.crt (orchestrator, attack-worker, reporter)
# With --tokens-only, the first two alone (and no CA or certificate is made): for clusters where
# cert-manager issues the TLS Secrets (components/cert-manager).
# Services read these files when they start: restart them after a change (deploy/k8s/README.md).
# Certificates last CERT_DAYS (default 365) days, the CA CA_DAYS (default 3650).
# Needs openssl and kubectl (which writes the Secrets with --dry-run=client: no cluster is contacted).
set -euo pipefail

tls=yes
if [ "${1:-}" = --tokens-only ]; then
    tls=no
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [--tokens-only] DIR CLIENT...   (e.g. $0 ~/privaudit-secrets privaudit-client | kubectl apply -f -)" >&2
    exit 2
fi
dir=$1
shift
namespace=privaudit
# The name the orchestrator expects from the workers, which it dials by pod IP, and from the
# reporter (its --peer-tls-server-name): both certificates carry it.
peer_name=privaudit-peer.privaudit.svc
cert_days=${CERT_DAYS:-365}
ca_days=${CA_DAYS:-3650}

umask 077
mkdir -p "$dir/clients"

# A token: 32 random bytes, hex.
new_token() { [ -s "$1" ] || openssl rand -hex 32 > "$1"; }

# An ECDSA P-256 key in SEC1 PEM, as cert-manager writes by default.
new_key() { [ -s "$1" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$1"; }

if [ $tls = yes ] && [ ! -s "$dir/ca.crt" ]; then
    new_key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$ca_days" -subj "/CN=privaudit CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt" 2>/dev/null
fi

# service_cert SERVICE EXTRA_DNS...: SERVICE's certificate ($dir/SERVICE.crt, .key), for its Service's
# names and EXTRA_DNS, usable to serve (server auth) and to call another service (client auth, mTLS).
service_cert() {
    local file=$dir/$1 name=privaudit-$1 dns extra
    [ -s "$file.crt" ] && return 0
    dns="DNS:$name,DNS:$name.$namespace,DNS:$name.$namespace.svc,DNS:$name.$namespace.svc.cluster.local"
    for extra in "${@:2}"; do dns="$dns,DNS:$extra"; done
    new_key "$file.key"
    openssl req -new -key "$file.key" -subj "/CN=$name" -out "$file.csr" 2>/dev/null
    openssl x509 -req -in "$file.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -sha256 -days "$cert_days" \
        -set_serial "0x$(openssl rand -hex 16)" -out "$file.crt" -extfile <(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$dns") 2>/dev/null
    rm -f "$file.csr"
}
if [ $tls = yes ]; then
    service_cert orchestrator
    service_cert attack-worker "$peer_name"
    service_cert reporter "$peer_name"
fi

new_token "$dir/internal-token"
for client in "$@"; do
    case $client in */* | .* | "") echo "$0: $client: a client name is one word, no '/'" >&2; exit 2 ;; esac
    new_token "$dir/clients/$client.token"
done
tokens=$(for file in "$dir"/clients/*.token; do
    printf '# %s\n%s\n' "$(basename "$file" .token)" "$(cat "$file")"
done)

secret() { kubectl create secret generic "$1" --namespace "$namespace" --dry-run=client -o yaml "${@:2}"; echo ---; }
secret privaudit-client-tokens --from-literal=tokens="$tokens"
secret privaudit-internal-token --from-file=token="$dir/internal-token"
[ $tls = yes ] || exit 0
for service in orchestrator attack-worker reporter; do
    secret "privaudit-$service-tls" --type=kubernetes.io/tls --from-file=tls.crt="$dir/$service.crt" \
        --from-file=tls.key="$dir/$service.key" --from-file=ca.crt="$dir/ca.crt"
done
