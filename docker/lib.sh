# Shared by docker/up, docker/down and docker/test (sourced, not run).
#
# Settings (environment):
#   PGTUNNEL_DEMO_PORT      host loopback port of shell.foo.com's sshd (default 2222)
#   PGTUNNEL_DEMO_PROJECT   compose project name (default pgtunnel-demo)
#   PGTUNNEL_DEBIAN_MIRROR  mirror for debootstrap (default: the one apt uses on this machine)
#   PGTUNNEL_DEMO_BUILD_NETWORK  network of the image builds (default: Docker's default bridge;
#                           host if apt in a container cannot reach the mirror through the bridge)
#   PGTUNNEL_COMPOSE        the compose command: "docker compose" (v2) or docker-compose (1.29);
#                           default: v2 if `docker compose` works, else docker-compose

demo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state_dir=$demo_dir/.state
export PGTUNNEL_DEMO_PORT=${PGTUNNEL_DEMO_PORT:-2222}
demo_project=${PGTUNNEL_DEMO_PROJECT:-pgtunnel-demo}
base_image=debian:bookworm-slim

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }
note() { printf '%s\n' "$*" >&2; }

# `docker compose` (v2 plugin) if present, else Debian's `docker-compose` (1.29);
# PGTUNNEL_COMPOSE="docker compose" or PGTUNNEL_COMPOSE=docker-compose picks one.
compose_cmd=()
compose() {
    if ((${#compose_cmd[@]} == 0)); then
        if [[ -n ${PGTUNNEL_COMPOSE:-} ]]; then
            read -r -a compose_cmd <<<"$PGTUNNEL_COMPOSE"
            "${compose_cmd[@]}" version >/dev/null 2>&1 || die "PGTUNNEL_COMPOSE=$PGTUNNEL_COMPOSE does not run"
        elif docker compose version >/dev/null 2>&1; then
            compose_cmd=(docker compose)
        elif command -v docker-compose >/dev/null; then
            compose_cmd=(docker-compose)
        else
            die "neither 'docker compose' nor 'docker-compose' found (apt-get install docker-compose)"
        fi
    fi
    "${compose_cmd[@]}" -p "$demo_project" -f "$demo_dir/compose.yml" "$@"
}

# The Debian mirror apt uses here (first deb/URIs entry ending in /debian), for debootstrap.
debian_mirror() {
    local kind=${1:-debian} uri
    if [[ $kind == debian && -n ${PGTUNNEL_DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "$PGTUNNEL_DEBIAN_MIRROR"
        return
    fi
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -nE 's/^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:\/\/[^[:space:]]+).*$/\3/p' |
        sed 's:/*$::' | grep -E "/$kind\$" | head -n1 || true)
    printf '%s\n' "${uri:-http://deb.debian.org/$kind}"
}

# debian:bookworm-slim, from the local image store or, when it is not there, made here with
# debootstrap from the Debian mirror (no container registry is contacted). `docker pull
# debian:bookworm-slim` beforehand skips this.
ensure_base_image() {
    if docker image inspect "$base_image" >/dev/null 2>&1; then
        return 0
    fi
    command -v debootstrap >/dev/null || die "$base_image is not in the local image store and debootstrap is missing: apt-get install debootstrap (or docker pull $base_image)"
    [[ $(id -u) -eq 0 ]] || die "$base_image is not in the local image store; making it with debootstrap needs root (or docker pull $base_image)"
    local mirror security work rootfs
    mirror=$(debian_mirror debian)
    security=$(debian_mirror debian-security)
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/pgtunnel-bookworm.XXXXXX")
    rootfs=$work/rootfs
    note "making $base_image: debootstrap --variant=minbase bookworm $mirror (log: $state_dir/debootstrap.log)"
    mkdir -p "$state_dir"
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state_dir/debootstrap.log" 2>&1; then
        tail -n 20 "$state_dir/debootstrap.log" >&2
        rm -rf "$work"
        die "debootstrap failed (log: $state_dir/debootstrap.log)"
    fi
    # Like the official slim image: apt sources in deb822 form, no docs, man pages or apt lists.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/log/* "$rootfs"/tmp/*
    printf '%s\n' localhost >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
        docker import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase bookworm $mirror (pgtunnel docker/)" - "$base_image" >/dev/null
    rm -rf "$work"
    note "made $base_image ($(docker image inspect -f '{{.Size}}' "$base_image" | awk '{printf "%d MB", $1/1e6}'))"
}

# A host key, as "TYPE BASE64", once the container's entrypoint has made it.
container_host_key() {
    local service=$1 key i
    for i in $(seq 1 60); do
        key=$(compose exec -T "$service" cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null | awk 'NF >= 2 { print $1, $2 }' || true)
        if [[ $key == ssh-ed25519\ * ]]; then
            printf '%s\n' "$key"
            return 0
        fi
        sleep 1
    done
    die "no host key from $service after 60 s (compose logs $service)"
}

# Builds and starts the stack; writes docker/.state/{id_ed25519,known_hosts,ssh_config}.
demo_up() {
    mkdir -p "$state_dir"
    if [[ ! -f $state_dir/id_ed25519 ]]; then
        command -v ssh-keygen >/dev/null || die "ssh-keygen not found (apt-get install openssh-client)"
        ssh-keygen -q -t ed25519 -N '' -C pgtunnel-demo -f "$state_dir/id_ed25519"
    fi
    ensure_base_image
    note "building the images (compose build; log: $state_dir/build.log)"
    if ! compose build >"$state_dir/build.log" 2>&1; then
        tail -n 30 "$state_dir/build.log" >&2
        die "compose build failed (log: $state_dir/build.log)"
    fi
    compose up -d >&2

    local shell_key db_key i
    shell_key=$(container_host_key shell)
    db_key=$(container_host_key db)
    # Under the names pgtunnel (and ssh) look up: HostKeyAlias shell.foo.com for the bastion,
    # db.foo.com (port 22, reached through the bastion) for the database host.
    printf 'shell.foo.com %s\ndb.foo.com %s\n' "$shell_key" "$db_key" >"$state_dir/known_hosts"
    local line
    while IFS= read -r line; do
        if [[ $line != \#* ]]; then
            line=${line//@STATE@/"$state_dir"}
            line=${line//@PORT@/"$PGTUNNEL_DEMO_PORT"}
        fi
        printf '%s\n' "$line"
    done <"$demo_dir/ssh_config.in" >"$state_dir/ssh_config"

    # Ready when PostgreSQL answers on db.foo.com and the bastion's sshd on the host port.
    for i in $(seq 1 60); do
        if compose exec -T db su postgres -c 'pg_isready -q' >/dev/null 2>&1 &&
            banner=$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && head -c 8 <&3' "$PGTUNNEL_DEMO_PORT" 2>/dev/null) &&
            [[ $banner == SSH-2.0- ]]; then
            return 0
        fi
        sleep 1
    done
    die "the stack did not become ready in 60 s (compose logs)"
}

demo_down() {
    compose down -v --remove-orphans >&2
    rm -f "$state_dir/known_hosts" "$state_dir/ssh_config"
}
