# Sourced by the scripts of benches/load: a work directory removed on exit together with the
# processes started (PIDS), and Debian packages installed when a command is missing.

# workdir NAME: W, a new directory /tmp/NAME.XXXXXX, and PIDS, empty. On exit every process in
# PIDS is stopped and W removed (kept with KEEP_WORKDIR=1).
workdir() {
  W="$(mktemp -d "/tmp/$1.XXXXXX")"
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
  exit "$rc"
}

# apt_install PACKAGE...: installs them (as root, or through sudo); nothing when none named.
apt_install() {
  (($#)) || return 0
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  if ! apt-cache policy "$@" | grep -q 'Candidate: [0-9]'; then $sudo apt-get update; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}
