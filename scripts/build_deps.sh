# Sourced by scripts/demo.sh and scripts/test.sh: installs the Debian
# packages that building modelbus needs, when they are missing. On a fresh
# Debian machine with only the Rust toolchain, `cargo build` fails while
# building librdkafka (from rdkafka's vendored source, with cmake, TLS from
# OpenSSL, and libcurl for its OIDC token support); these are its needs.
# Extra packages a caller needs may be passed as arguments: `name:command`
# (installed when `command` is missing) or `name` (when the package is).

install_missing_packages() {
  local need=()
  command -v cc >/dev/null || need+=(build-essential)
  command -v make >/dev/null || need+=(make)
  command -v cmake >/dev/null || need+=(cmake)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
  dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
  # cargo fetches crates over HTTPS: a minimal Debian has no CA bundle.
  dpkg -s ca-certificates >/dev/null 2>&1 || need+=(ca-certificates)
  local extra
  for extra in "$@"; do
    case $extra in
      *:*) command -v "${extra#*:}" >/dev/null || need+=("${extra%%:*}") ;;
      *) dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra") ;;
    esac
  done
  ((${#need[@]})) || return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then
      sudo=(sudo)
    else
      echo "error: these Debian packages are needed to build modelbus: ${need[*]}" >&2
      echo "       install them as root: apt-get install ${need[*]}" >&2
      return 1
    fi
  fi
  printf '\n==> installing Debian packages: %s\n' "${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
}
