#!/usr/bin/env bash
# A real single-node Kubernetes 1.20 on this machine, for the chart's tests.
#
#   scripts/kubernetes-local.sh build       Debian packages + Kubernetes binaries
#                                          (built once from Debian's source
#                                          package, cached in $COS_K8S_CACHE)
#   scripts/kubernetes-local.sh up          start etcd, the control plane, a
#                                          containerd node, kube-proxy and DNS;
#                                          prints the admin kubeconfig's path
#   scripts/kubernetes-local.sh load-image IMAGE
#                                          copy IMAGE (e.g. localhost/cos-ray:dev)
#                                          from podman into the node's containerd
#   scripts/kubernetes-local.sh kubeconfig  print the admin kubeconfig's path
#   scripts/kubernetes-local.sh node-ip     print the node's address (pods reach us there)
#   scripts/kubernetes-local.sh down        stop all of it and forget its state
#
# Root only. The node's address (the API server's, the kubelet's, cluster DNS's) is
# the source address of the default route, or $COS_K8S_NODE_IP. Pods see the API at
# the `kubernetes` Service, 10.96.0.1:443, and resolve <svc>.<ns>.svc.cluster.local
# through dnsmasq fed by scripts/kubernetes_dns.py. Logs: $COS_K8S_STATE/logs.
# The recipe is in docs/kubernetes.md ("Testing the chart").
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${COS_K8S_CACHE:-/var/cache/cos-ray/kubernetes-1.20}
STATE=${COS_K8S_STATE:-/var/lib/cos-ray-k8s}
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
PACKAGES="golang-go etcd-server containerd containernetworking-plugins iptables conntrack dpkg-dev
    dnsmasq-base jq"
# started in this order, stopped in the reverse one
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet
    kube-proxy dnsmasq kubernetes-dns"
BIN=$CACHE/bin
SOCK=$STATE/containerd/containerd.sock
PAUSE_IMAGE=localhost/pause:3.4.1
SERVICE_CIDR=10.96.0.0/16 # the `kubernetes` Service gets its first address, 10.96.0.1
CLUSTER_CIDR=10.244.0.0/16
POD_SUBNET=10.244.0.0/24 # the one node's share of CLUSTER_CIDR
DOMAIN=cluster.local
NODE=${COS_K8S_NODE:-$(hostname | tr '[:upper:]' '[:lower:]')}
# what scripts/build-image.sh uses: podman needs runc and explicit ulimits here
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/docker/containers.conf}
# the sysctls up sets (or the kubelet and kube-proxy set); down puts them back
SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet
    vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
# what containerd, the kubelet and CNI create outside $STATE whatever their configuration;
# down removes those that up found missing (/run/netns only when empty: podman uses it too)
OUTSIDE="/run/containerd /opt/containerd /var/lib/kubelet /var/lib/cni /var/log/pods
    /var/log/containers /run/netns"

log() { echo "kubernetes-local: $*" >&2; }

have_binaries() {
    local b
    for b in $BINARIES; do [[ -x "$CACHE/bin/$b" ]] || return 1; done
}

install_packages() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build() {
    install_packages
    if have_binaries; then
        log "binaries cached in $CACHE/bin"
        return
    fi
    local src=$CACHE/src mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    mkdir -p "$src" "$CACHE/bin"
    if ! ls "$src"/kubernetes-*/Makefile >/dev/null 2>&1; then
        echo "deb-src $mirror bookworm main" >/etc/apt/sources.list.d/cos-ray-src.list
        apt-get update -qq
        (cd "$src" && apt-get source -qq --download-only kubernetes &&
            dpkg-source -x --no-check ./*.dsc >/dev/null)
    fi
    local tree
    tree=$(dirname "$(ls "$src"/kubernetes-*/Makefile | head -1)")
    log "building $BINARIES in $tree (about 15 minutes on 2 cores)"
    (
        cd "$tree"
        mkdir -p .go/src/k8s.io
        ln -sfn ../../.. .go/src/k8s.io/kubernetes
        GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="$(printf 'cmd/%s ' $BINARIES)" >"$CACHE/build.log" 2>&1
        for b in $BINARIES; do cp "_output/bin/$b" "$CACHE/bin/"; done
        # the pause image of every pod sandbox, built from Kubernetes' own source
        gcc -static -O2 -o "$CACHE/bin/pause" build/pause/linux/pause.c
    )
    rm -rf "$tree/_output" "$tree/.go/pkg"
    log "binaries in $CACHE/bin"
}

die() {
    log "$*"
    exit 1
}

# --- processes: each component in its own session, so its pid is its process group

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null; }

running() {
    local pid
    pid=$(pid_of "$1") || return 1
    ps -o pgid=,stat= -p "$pid" | awk -v p="$pid" '$1 == p && $2 !~ /^Z/ { ok = 1 } END { exit !ok }'
}

# any live process in group $1 (zombies wait for init, which reaps them slowly here)
group_alive() {
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

start() {
    local name=$1
    shift
    running "$name" && return
    log "starting $name"
    # setsid execs in place (a background job of a script leads no group): $! is the pgid
    setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
}

stop() {
    local name=$1 pid i
    pid=$(pid_of "$name") || return 0
    if group_alive "$pid"; then
        log "stopping $name"
        kill -TERM -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            group_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/pids/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: poll COMMAND until it succeeds, else show the logs
wait_for() {
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return
        sleep 0.5
    done
    tail -n 20 "$STATE"/logs/*.log >&2 || true
    die "timed out after ${seconds}s waiting for $what (logs in $STATE/logs)"
}

# --- tools

KUBECTL=
find_kubectl() {
    [[ -n $KUBECTL ]] && return
    # the machine's kubectl (1.32) speaks the basic verbs to 1.20; else Debian's 1.20 client,
    # unpacked rather than installed (installing it clashes with a preinstalled kubectl)
    if command -v kubectl >/dev/null && kubectl version --client >/dev/null 2>&1; then
        KUBECTL=$(command -v kubectl)
        return
    fi
    if [[ ! -x $CACHE/kubectl/usr/bin/kubectl ]]; then
        log "fetching Debian's kubernetes-client"
        local tmp
        tmp=$(mktemp -d)
        (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null)
        dpkg -x "$tmp"/kubernetes-client_*.deb "$CACHE/kubectl"
        rm -rf "$tmp"
    fi
    KUBECTL=$CACHE/kubectl/usr/bin/kubectl
}

k() { "$KUBECTL" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

kctr() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

# --- configuration, written once per cluster

node_ip() {
    if [[ -n ${COS_K8S_NODE_IP:-} ]]; then
        echo "$COS_K8S_NODE_IP"
    else
        # the default route's source address: pods reach it over cni0, the kubelet accepts it
        ip -4 route get 1.1.1.1 |
            awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }'
    fi
}

# sign NAME SUBJECT EXTENSIONS: a key and a certificate for it from the cluster's CA
sign() {
    local d=$STATE/pki
    openssl req -new -newkey rsa:2048 -nodes -keyout "$d/$1.key" -subj "$2" -out "$d/$1.csr" 2>/dev/null
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
        -out "$d/$1.crt" -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" "$3") 2>/dev/null
    rm -f "$d/$1.csr"
}

make_pki() {
    local d=$STATE/pki ip=$1 name
    [[ -s $d/tokens.csv ]] && return
    log "making a CA, certificates and tokens in $d"
    mkdir -p "$d"
    # our own CA rather than the API server's self-signed certificate: the ServiceAccount
    # secrets carry it (--root-ca-file) and pods verify https://10.96.0.1 with it
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=cos-ray-k8s-ca \
        -keyout "$d/ca.key" -out "$d/ca.crt" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    local svc=DNS:kubernetes.default.svc
    sign apiserver /CN=kube-apiserver "extendedKeyUsage=serverAuth
subjectAltName=IP:10.96.0.1,IP:$ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,$svc,$svc.$DOMAIN"
    # the API server's identity towards the kubelet (logs, exec, port-forward)
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
        "extendedKeyUsage=clientAuth"
    openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
    openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
    # one bearer token per client, each with the identity the bootstrap RBAC roles expect
    # (the kubelet's for the Node authorizer); kubernetes-dns gets its role in up
    for name in admin controller-manager scheduler kubelet kube-proxy kubernetes-dns; do
        openssl rand -hex 16 >"$d/$name.token"
    done
    {
        echo "$(<"$d/admin.token"),admin,admin,system:masters"
        name=system:kube-controller-manager
        echo "$(<"$d/controller-manager.token"),$name,$name"
        echo "$(<"$d/scheduler.token"),system:kube-scheduler,system:kube-scheduler"
        echo "$(<"$d/kubelet.token"),system:node:$NODE,system:node:$NODE,system:nodes"
        echo "$(<"$d/kube-proxy.token"),system:kube-proxy,system:kube-proxy"
        echo "$(<"$d/kubernetes-dns.token"),cos-ray:kubernetes-dns,cos-ray:kubernetes-dns"
    } >"$d/tokens.csv.tmp"
    mv "$d/tokens.csv.tmp" "$d/tokens.csv"
    chmod 600 "$d"/*.key "$d"/*.token "$d/tokens.csv"
}

# write_kubeconfig NAME IP: $STATE/NAME.kubeconfig with NAME's token (the CA embedded: it
# can be copied)
write_kubeconfig() {
    local ca
    ca=$(base64 -w0 "$STATE/pki/ca.crt")
    (
        umask 077
        cat >"$STATE/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: cos-ray-local
  cluster: {server: "https://$2:6443", certificate-authority-data: "$ca"}
users:
- name: $1
  user: {token: "$(<"$STATE/pki/$1.token")"}
contexts:
- name: cos-ray-local
  context: {cluster: cos-ray-local, user: $1, namespace: default}
current-context: cos-ray-local
KC
    )
}

write_configs() {
    local ip=$1 name
    [[ -s $STATE/kube-proxy.yaml ]] && return
    for name in admin controller-manager scheduler kubelet kube-proxy kubernetes-dns; do
        write_kubeconfig "$name" "$ip"
    done
    mkdir -p "$STATE/containerd/net.d" "$STATE/dns"
    # restrict_oom_score_adj: no CAP_SYS_RESOURCE here; sandbox_image: no registry here
    cat >"$STATE/containerd/config.toml" <<CONF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/containerd/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
CONF
    # hairpinMode: a pod reaches itself through its own Service; IPAM state under $STATE
    cat >"$STATE/containerd/net.d/10-bridge.conflist" <<CONF
{"cniVersion": "0.4.0", "name": "cosnet", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni", "ranges": [[{"subnet": "$POD_SUBNET"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CONF
    # cgroupsPerQOS/enforceNodeAllocatable off and cgroupfs: cgroup v1 hybrid, no systemd;
    # the API server authenticates to the kubelet with its client certificate
    cat >"$STATE/kubelet.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$STATE/pki/ca.crt"}
authorization: {mode: Webhook}
staticPodPath: ""
clusterDomain: $DOMAIN
clusterDNS: [$ip]
resolvConf: /etc/resolv.conf
enforceNodeAllocatable: []
cgroupsPerQOS: false
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
volumePluginDir: "$STATE/kubelet/volume-plugins"
CONF
    # conntrack zeros: leave the host's conntrack table sizes and timeouts alone
    cat >"$STATE/kube-proxy.yaml" <<CONF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
hostnameOverride: $NODE
clusterCIDR: $CLUSTER_CIDR
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
CONF
}

set_sysctls() {
    local s
    if [[ ! -s $STATE/sysctls.saved ]]; then
        for s in $SYSCTLS; do
            sysctl -n "$s" >/dev/null 2>&1 && echo "$s=$(sysctl -n "$s")"
        done >"$STATE/sysctls.saved"
    fi
    # pods route through the host; bridged pod-to-pod Service traffic must see kube-proxy's rules
    sysctl -qw net.ipv4.ip_forward=1
    if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
        sysctl -qw net.bridge.bridge-nf-call-iptables=1
    fi
}

note_outside() {
    local d
    [[ -e $STATE/outside.created ]] && return
    for d in $OUTSIDE; do [[ -e $d ]] || echo "$d"; done >"$STATE/outside.created"
}

remove_outside() {
    local d
    [[ -s $STATE/outside.created ]] || return 0
    while read -r d; do
        if [[ $d == /run/netns ]]; then
            rmdir "$d" 2>/dev/null || true
        else
            rm -rf --one-file-system "$d"
        fi
    done <"$STATE/outside.created"
}

restore_sysctls() {
    local line
    [[ -s $STATE/sysctls.saved ]] || return 0
    while read -r line; do sysctl -qw "$line" || true; done <"$STATE/sysctls.saved"
}

# --- images

# load_image IMAGE: podman's IMAGE into the node's containerd, under the same name
load_image() {
    local image=$1
    [[ -S $SOCK ]] || die "the node is not up (no $SOCK)"
    # podman names the archive's manifest IMAGE in full (org.opencontainers.image.ref.name);
    # --base-name only keeps ctr from importing anything else
    local attempt
    for attempt in 1 2 3; do
        podman save -q --format oci-archive "$image" |
            kctr images import --base-name "${image%:*}" - >/dev/null ||
            die "could not copy $image from podman to containerd"
        if kctr images ls -q | grep -Fqx "$image"; then
            log "loaded $image"
            return
        fi
        # Seen once, right after `up` on a new node and not reproduced since: the import
        # succeeded and the image was not listed. Importing again is harmless.
        log "$image is not in containerd after import $attempt; containerd has: $(kctr images ls -q | tr '\n' ' ')"
        sleep 2
    done
    die "$image is not in containerd after the import"
}

ensure_pause_image() {
    kctr images ls -q | grep -Fqx "$PAUSE_IMAGE" && return
    if ! podman image exists "$PAUSE_IMAGE"; then
        local ctx
        ctx=$(mktemp -d)
        cp "$BIN/pause" "$ctx/pause"
        printf '%s\n' 'FROM scratch' 'COPY pause /pause' 'ENTRYPOINT ["/pause"]' >"$ctx/Containerfile"
        podman build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null
        rm -rf "$ctx"
    fi
    load_image "$PAUSE_IMAGE"
}

# --- up

all_running() {
    local c
    for c in $COMPONENTS; do running "$c" || return 1; done
}

dns_upstream() {
    awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf
}

node_ready() {
    [[ $(k get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# pods can be created once the default ServiceAccount has its token secret
default_service_account() {
    [[ -n $(k -n default get serviceaccount default -o jsonpath='{.secrets[0].name}') ]]
}

up() {
    if [[ -d $STATE/pids ]] && all_running; then
        log "already running"
        echo "$STATE/admin.kubeconfig"
        return
    fi
    build
    find_kubectl
    local ip upstream python=python3
    mkdir -p "$STATE/logs" "$STATE/pids"
    [[ -s $STATE/node-ip ]] || node_ip >"$STATE/node-ip"
    ip=$(<"$STATE/node-ip")
    [[ -n $ip ]] || die "no node address (no default route?); set COS_K8S_NODE_IP"
    log "node $NODE at $ip"
    upstream=$(dns_upstream)
    [[ -n $upstream ]] || die "no nameserver in /etc/resolv.conf for cluster DNS to forward to"
    make_pki "$ip"
    write_configs "$ip"
    set_sysctls
    note_outside

    start etcd etcd --name default --data-dir "$STATE/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster default=http://127.0.0.1:2380
    wait_for etcd 30 curl -fs http://127.0.0.1:2379/health

    # on the node address, which the `kubernetes` Service's endpoint is and pods can reach
    start kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
        --bind-address="$ip" --advertise-address="$ip" --secure-port=6443 \
        --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
        --client-ca-file="$STATE/pki/ca.crt" --token-auth-file="$STATE/pki/tokens.csv" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true --service-cluster-ip-range="$SERVICE_CIDR" \
        --service-account-issuer="https://kubernetes.default.svc.$DOMAIN" \
        --service-account-key-file="$STATE/pki/sa.pub" \
        --service-account-signing-key-file="$STATE/pki/sa.key" \
        --kubelet-client-certificate="$STATE/pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$STATE/pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP
    wait_for kube-apiserver 60 k get --raw /readyz

    local kc=$STATE/controller-manager.kubeconfig
    # the token controller signs ServiceAccount tokens and puts our CA next to them
    start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$kc" \
        --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false --controllers='*,-nodeipam' \
        --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/ca.crt" \
        --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
        --cluster-signing-cert-file="$STATE/pki/ca.crt" --cluster-signing-key-file="$STATE/pki/ca.key" \
        --flex-volume-plugin-dir="$STATE/controller-manager/volume-plugins"
    kc=$STATE/scheduler.kubeconfig
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$kc" \
        --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
        --bind-address=127.0.0.1 --port=0 --leader-elect=false

    start containerd containerd --config "$STATE/containerd/config.toml"
    wait_for containerd 30 ctr --address "$SOCK" version
    ensure_pause_image

    start kubelet "$BIN/kubelet" --config="$STATE/kubelet.yaml" \
        --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
        --cert-dir="$STATE/kubelet/pki" \
        --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
        --node-ip="$ip" --hostname-override="$NODE"
    start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy.yaml"

    # cluster DNS: dnsmasq answers $DOMAIN from the hosts file kubernetes_dns.py keeps in
    # $STATE/dns and forwards the rest to the machine's resolver
    start dnsmasq dnsmasq --keep-in-foreground --log-facility=- --conf-file=/dev/null \
        --listen-address="$ip" --bind-interfaces --port=53 --no-hosts --hostsdir="$STATE/dns" \
        --no-resolv --server="$upstream" --domain-needed --bogus-priv --local="/$DOMAIN/" \
        --no-negcache
    # (its own role: the aggregated `view` gets its rules only once the controller-manager runs)
    k create clusterrole cos-ray:kubernetes-dns --verb=get,list,watch \
        --resource=services,endpoints >/dev/null 2>&1 || true
    k create clusterrolebinding cos-ray:kubernetes-dns --clusterrole=cos-ray:kubernetes-dns \
        --user=cos-ray:kubernetes-dns >/dev/null 2>&1 || true
    [[ -x $REPO/.venv/bin/python ]] && python=$REPO/.venv/bin/python
    start kubernetes-dns "$python" "$REPO/scripts/kubernetes_dns.py" \
        --kubeconfig="$STATE/kubernetes-dns.kubeconfig" --hosts-dir="$STATE/dns" \
        --domain="$DOMAIN" --kubectl="$KUBECTL"

    wait_for "node $NODE Ready" 120 node_ready
    wait_for "the default ServiceAccount" 60 default_service_account
    wait_for "cluster DNS" 30 test -s "$STATE/dns/cluster.hosts"
    all_running || die "a component exited (logs in $STATE/logs)"
    log "up: node $NODE Ready"
    echo "$STATE/admin.kubeconfig"
}

# --- down

# Pods' containers run under containerd-shims, which outlive containerd and the kubelet:
# kill and delete them through containerd, and unmount their network namespaces (which
# only the kubelet's StopPodSandbox would otherwise release) so their veths go too.
remove_pods() {
    [[ -S $SOCK ]] && ctr --address "$SOCK" version >/dev/null 2>&1 || return 0
    local id ids netns i
    for id in $(kctr tasks ls -q); do kctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    # the CRI plugin deletes most exited tasks itself; delete the rest
    for ((i = 0; i < 50; i++)); do
        ids=$(kctr tasks ls -q)
        [[ -n $ids ]] || break
        for id in $ids; do kctr tasks delete "$id" >/dev/null 2>&1 || true; done
        sleep 0.1
    done
    for id in $(kctr containers ls -q); do
        netns=$(kctr containers info "$id" |
            jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty')
        if [[ $netns == /*/netns/* && -e $netns ]]; then
            umount "$netns" 2>/dev/null || true
            rm -f "$netns"
        fi
        kctr containers rm "$id" >/dev/null 2>&1 || true
    done
}

# shims whose containerd is ours, by its socket; normally gone once their tasks are deleted
kill_shims() {
    local p
    for p in /proc/[0-9]*; do
        { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.* -address $SOCK " &&
            kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
}

# the cgroups containerd made for containers (rmdir: only empty ones go)
remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/k8s.io; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

unmount_state() {
    local m
    awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

# the rules kube-proxy made (its own --cleanup) and what that leaves: the kubelet's chains
# and both canaries
remove_iptables() {
    local chain table
    "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    for table in filter nat mangle; do
        for chain in KUBE-FIREWALL KUBE-MARK-DROP KUBE-MARK-MASQ KUBE-POSTROUTING \
            KUBE-KUBELET-CANARY KUBE-PROXY-CANARY; do
            iptables -t "$table" -S "$chain" >/dev/null 2>&1 || continue
            iptables -t "$table" -S | awk -v c="$chain" '$1 == "-A" && / -j / && $NF == c' |
                while read -r rule; do eval "iptables -t $table ${rule/-A/-D}" || true; done
            iptables -t "$table" -F "$chain" 2>/dev/null || true
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}

down() {
    [[ -d $STATE ]] || {
        log "nothing to stop (no $STATE)"
        return
    }
    local c components=() i
    for c in $COMPONENTS; do components=("$c" "${components[@]}"); done
    for c in "${components[@]}"; do
        # the node's pods, while containerd still runs and the kubelet no longer restarts them
        [[ $c == containerd ]] && remove_pods
        stop "$c"
    done
    kill_shims
    remove_cgroups
    unmount_state
    ip link delete cni0 2>/dev/null || true
    remove_iptables
    restore_sysctls
    remove_outside
    rm -rf --one-file-system "$STATE"
    log "down"
}

case "${1:-}" in
    build) build ;;
    up) up ;;
    down) down ;;
    load-image)
        [[ $# -eq 2 ]] || { echo "usage: $0 load-image IMAGE" >&2; exit 2; }
        load_image "$2"
        ;;
    kubeconfig)
        [[ -s $STATE/admin.kubeconfig ]] || die "not up (no $STATE/admin.kubeconfig)"
        echo "$STATE/admin.kubeconfig"
        ;;
    node-ip)
        [[ -s $STATE/node-ip ]] || die "not up (no $STATE/node-ip)"
        cat "$STATE/node-ip"
        ;;
    *) echo "usage: $0 build|up|down|load-image IMAGE|kubeconfig|node-ip" >&2; exit 2 ;;
esac
