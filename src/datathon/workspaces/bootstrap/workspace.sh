# --- datathon workspace bootstrap (the body; settings are set above by render_user_data) ---
# Turns a fresh Debian/Ubuntu machine into one team's workspace. Idempotent: every step checks before acting,
# and a second run reports "0 change(s)". Carries no secret: the team's .pgpass arrives after boot over SSH.
set -euo pipefail
umask 022
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

CHANGES=0
log() { printf '%s datathon-bootstrap: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
changed() { CHANGES=$((CHANGES + 1)); log "changed: $*"; }
ok() { log "ok: $*"; }
die() { log "FAILED: $*"; exit 1; }
b64() { base64 -d <<<"$1"; }

HOME_DIR="$DT_HOME_ROOT/$DT_USER"
ENV="$DT_ENV_ROOT/env-$DT_ENV_DIGEST"
LIB="$DT_SYS_ROOT/usr/local/lib/datathon"
STATE="$DT_STATE_DIR"

# Packages: Debian's R with its Jupyter kernel and database drivers, python3-venv, psql.
step_packages() {
  local missing=() p
  for p in $DT_APT; do
    dpkg-query -W -f='${Status}' "${p%%=*}" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then ok "Debian packages ($DT_APT)"; return; fi
  log "installing ${missing[*]}"
  # At first boot unattended-upgrades may hold dpkg's lock: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
}

# The team environment: a venv of /usr/bin/python3 named by a hash of its package list, as the local provider
# builds it; complete only once its stamp is written (a half-built one is removed and built again).
step_environment() {
  if [ -f "$ENV/.datathon-env.json" ] && [ "$(cat "$ENV/.datathon-env.json")" = "$DT_ENV_SPEC" ]; then
    ok "team environment $ENV"; return
  fi
  log "building the team environment $ENV (a few minutes)"
  rm -rf "$ENV"; mkdir -p "$DT_ENV_ROOT" "$STATE"
  local reqs piplog="$STATE/pip.log"; mapfile -t reqs <<<"$DT_PIP"  # one requirement a line: no splitting, no globs
  /usr/bin/python3 -m venv "$ENV"
  { "$ENV/bin/python" -m pip install -q --upgrade pip &&
    "$ENV/bin/python" -m pip install -q --progress-bar off "${reqs[@]}"; } >"$piplog" 2>&1 \
    || { tail -n 20 "$piplog"; die "pip could not install the team's packages (full output: $piplog)"; }
  local kernels
  kernels=$("$ENV/bin/jupyter" kernelspec list --json)
  if ! grep -q '"ir"' <<<"$kernels"; then  # a distribution whose r-cran-irkernel ships no kernelspec
    PATH="$ENV/bin:$PATH" Rscript -e "IRkernel::installspec(user = FALSE, prefix = '$ENV')" >/dev/null
    kernels=$("$ENV/bin/jupyter" kernelspec list --json)
  fi
  for k in python3 ir; do grep -q "\"$k\"" <<<"$kernels" || die "the team environment has no $k kernel"; done
  Rscript -e "suppressMessages({library(IRkernel); library(DBI); library(RPostgreSQL)})" \
    || die "R cannot load IRkernel, DBI and RPostgreSQL"
  mkdir -p "$ENV/share/jupyter/lab/settings"
  printf '%s\n' "$DT_LAB_SETTINGS" >"$ENV/share/jupyter/lab/settings/overrides.json"
  printf '%s\n' "$DT_ENV_SPEC" >"$ENV/.datathon-env.json"
  changed "built the team environment $ENV"
}

# The team's Unix user, with a private home.
step_user() {
  if id -u "$DT_USER" >/dev/null 2>&1; then
    ok "Unix user $DT_USER"
  else
    mkdir -p "$DT_HOME_ROOT"
    useradd --create-home --home-dir "$HOME_DIR" --shell /bin/bash --user-group \
      --comment "datathon event $DT_EVENT team $DT_TEAM" "$DT_USER"
    changed "created Unix user $DT_USER"
  fi
  if [ "$(stat -c %a "$HOME_DIR")" != 700 ]; then chmod 700 "$HOME_DIR"; changed "made $HOME_DIR private"; fi
}

# Files in the home are written as the team itself, never as root: the home is the team's, and root following a
# link the team planted there would write anywhere.
as_user() { setpriv --reuid="$DT_USER" --regid="$(id -g "$DT_USER")" --init-groups --reset-env -- "$@"; }

# put PATH MODE OVERWRITE BASE64: ~/PATH with this content (OVERWRITE=0: only when missing, the team may edit it).
put() {
  local path=$1 mode=$2 overwrite=$3 data=$4 target="$HOME_DIR/$1" current
  if as_user test -e "$target" && { [ "$overwrite" = 0 ] || { current=$(as_user base64 -w0 "$target") && [ "$current" = "$data" ] && [ "$(as_user stat -c %a "$target")" = "$mode" ]; }; }; then
    ok "~/$path"; return
  fi
  as_user mkdir -p "$(dirname "$target")"
  b64 "$data" | as_user sh -c 'umask 077; cat >"$1.datathon-new" && chmod "$2" "$1.datathon-new" && mv -f "$1.datathon-new" "$1"' sh "$target" "$mode"
  changed "wrote ~/$path"
}

step_home() {
  local f
  while IFS=' ' read -r path mode overwrite data; do
    [ -n "$path" ] && put "$path" "$mode" "$overwrite" "$data"
  done <<<"$DT_FILES"
  # Login shells read the database settings (su - team, ssh): one line in ~/.profile and ~/.bashrc.
  for f in .profile .bashrc; do
    if as_user grep -qxF "$DT_SOURCE_LINE" "$HOME_DIR/$f" 2>/dev/null; then ok "~/$f reads ~/.datathon/env.sh"
    else printf '%s\n' "$DT_SOURCE_LINE" | as_user sh -c 'cat >>"$1"' sh "$HOME_DIR/$f"; changed "~/$f reads ~/.datathon/env.sh"; fi
  done
  # JupyterLab's token is made here and never leaves the machine in user data; the handout step may replace it.
  if as_user test -s "$HOME_DIR/.datathon/jupyter-token"; then ok "~/.datathon/jupyter-token"
  else as_user sh -c 'umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n" >"$1"' sh "$HOME_DIR/.datathon/jupyter-token"
    changed "made a JupyterLab token"; fi
}

# The team's SSH key: the public half (no secret) from the settings, else the EC2 key pair's from IMDSv2.
step_ssh() {
  local key=$DT_AUTHORIZED_KEY tok
  if [ -z "$key" ]; then
    tok=$(curl -fsS -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token 2>/dev/null || true)
    [ -n "$tok" ] && key=$(curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $tok" \
      http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key 2>/dev/null || true)
  fi
  if [ -z "$key" ]; then ok "no SSH key given and none in the instance metadata"; return; fi
  if as_user grep -qxF "$key" "$HOME_DIR/.ssh/authorized_keys" 2>/dev/null; then ok "~/.ssh/authorized_keys"; return; fi
  as_user sh -c 'umask 077; mkdir -p "$1/.ssh" && cat >>"$1/.ssh/authorized_keys"' sh "$HOME_DIR" <<<"$key"
  changed "added the team's key to ~/.ssh/authorized_keys"
}

# The instance-store NVMe, where the machine has one: formatted (only when it holds no filesystem) and mounted at
# the scratch folder, with a README saying it is erased when the machine stops.
# instance_store_devices: reads "NAME MODEL..." lines (lsblk -dn -o NAME,MODEL), prints the instance-store ones.
instance_store_devices() { awk '/Amazon EC2 NVMe Instance Storage/ {print "/dev/" $1}'; }

step_scratch() {
  local dev
  if [ -n "$DT_SCRATCH_DEVICE" ]; then dev=$DT_SCRATCH_DEVICE
  else dev=$(lsblk -dn -o NAME,MODEL 2>/dev/null | instance_store_devices | head -n1 || true); fi
  if [ -z "$dev" ]; then ok "no instance-store disk: no $DT_SCRATCH"; return; fi
  if ! blkid -p "$dev" >/dev/null 2>&1; then
    mkfs.ext4 -q -F -L datathon-scratch "$dev"; changed "formatted $dev (ext4)"
  fi
  mkdir -p "$DT_SCRATCH"
  if [ "$(findmnt -rn -o SOURCE --mountpoint "$DT_SCRATCH" 2>/dev/null || true)" = "$dev" ]; then
    ok "$dev mounted at $DT_SCRATCH"
  else
    mount -o noatime "$dev" "$DT_SCRATCH"; changed "mounted $dev at $DT_SCRATCH"
  fi
  if [ "$(stat -c '%U %a' "$DT_SCRATCH")" != "$DT_USER 755" ]; then
    chown "$DT_USER:" "$DT_SCRATCH"; chmod 755 "$DT_SCRATCH"; changed "$DT_SCRATCH belongs to $DT_USER"
  fi
  if [ "$(cat "$DT_SCRATCH/README" 2>/dev/null || true)" != "$DT_SCRATCH_README" ]; then
    rm -f "$DT_SCRATCH/README"; printf '%s\n' "$DT_SCRATCH_README" >"$DT_SCRATCH/README"
    chown root: "$DT_SCRATCH/README"; chmod 644 "$DT_SCRATCH/README"
    changed "wrote $DT_SCRATCH/README"
  fi
}

# JupyterLab on 127.0.0.1 only (reached through an SSH tunnel), as the team, with the settings of its login
# shell; the token is passed in the environment, never on a command line others can read.
step_runner() {
  mkdir -p "$LIB" "$STATE"
  local want
  want=$(printf '#!/bin/bash\n# datathon: runs JupyterLab for %s\nset -e\ncd\n. ~/.datathon/env.sh\nJUPYTER_TOKEN=$(cat ~/.datathon/jupyter-token)\nexport JUPYTER_TOKEN\nexec %q/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=%q --ServerApp.port_retries=0\n' "$DT_USER" "$ENV" "$DT_PORT")
  if [ "$(cat "$LIB/jupyterlab-$DT_USER" 2>/dev/null || true)" = "$want" ]; then ok "$LIB/jupyterlab-$DT_USER"
  else printf '%s\n' "$want" >"$LIB/jupyterlab-$DT_USER"; chmod 755 "$LIB/jupyterlab-$DT_USER"; changed "wrote $LIB/jupyterlab-$DT_USER"; fi
  # The bootstrap itself, run again at every boot by systemd: a stopped machine comes back with an empty NVMe.
  if [ -n "${DT_SELF:-}" ] && [ -f "$DT_SELF" ] && ! cmp -s "$DT_SELF" "$LIB/bootstrap.sh"; then
    install -m 700 "$DT_SELF" "$LIB/bootstrap.sh"; changed "installed $LIB/bootstrap.sh"
  fi
}

# The token goes to curl on stdin, not on its command line.
jupyter_answers() {
  { printf 'Authorization: token '; as_user cat "$HOME_DIR/.datathon/jupyter-token"; echo; } |
    curl -fsS -m 5 -o /dev/null -H @- "http://127.0.0.1:$DT_PORT/api/status" 2>/dev/null
}

wait_jupyter() {
  local i
  for i in $(seq 1 120); do jupyter_answers && return 0; sleep 1; done
  die "JupyterLab does not answer on 127.0.0.1:$DT_PORT (see $STATE/jupyterlab-$DT_USER.log)"
}

unit_text() {
  printf '[Unit]\nDescription=JupyterLab of datathon team %s\nAfter=network-online.target\n\n[Service]\nUser=%s\nExecStart=%s\nRestart=on-failure\nRestartSec=3\n\n[Install]\nWantedBy=multi-user.target\n' \
    "$DT_TEAM" "$DT_USER" "$LIB/jupyterlab-$DT_USER"
}
boot_unit_text() {
  printf '[Unit]\nDescription=datathon workspace bootstrap (scratch disk, JupyterLab)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nExecStart=%s\n\n[Install]\nWantedBy=multi-user.target\n' \
    "$LIB/bootstrap.sh"
}

step_service() {
  if [ -d /run/systemd/system ] && [ "$DT_SERVICE" = auto ]; then
    local unit="/etc/systemd/system/datathon-jupyterlab.service" boot="/etc/systemd/system/datathon-bootstrap.service"
    if [ "$(cat "$unit" 2>/dev/null || true)" != "$(unit_text)" ]; then
      unit_text >"$unit"; systemctl daemon-reload; systemctl enable -q datathon-jupyterlab.service
      systemctl restart datathon-jupyterlab.service; changed "JupyterLab service $unit"
    elif ! systemctl is-active -q datathon-jupyterlab.service; then
      systemctl start datathon-jupyterlab.service; changed "started datathon-jupyterlab.service"
    else ok "datathon-jupyterlab.service runs"; fi
    if [ -f "$LIB/bootstrap.sh" ] && [ "$(cat "$boot" 2>/dev/null || true)" != "$(boot_unit_text)" ]; then
      boot_unit_text >"$boot"; systemctl daemon-reload; systemctl enable -q datathon-bootstrap.service
      changed "bootstrap runs at every boot ($boot)"
    fi
  else  # no systemd (a container): a background process with a pid file
    local pidfile="$STATE/jupyterlab-$DT_USER.pid" pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(stat -c %U "/proc/$pid" 2>/dev/null || true)" = "$DT_USER" ] && jupyter_answers; then
      ok "JupyterLab runs (pid $pid)"; return
    fi
    [ -n "$pid" ] && [ "$(stat -c %U "/proc/$pid" 2>/dev/null || true)" = "$DT_USER" ] && kill "$pid" 2>/dev/null || true
    nohup setpriv --reuid="$DT_USER" --regid="$(id -g "$DT_USER")" --init-groups --reset-env -- \
      "$LIB/jupyterlab-$DT_USER" >>"$STATE/jupyterlab-$DT_USER.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    changed "started JupyterLab (pid $!, pid file $pidfile)"
  fi
  wait_jupyter
  ok "JupyterLab answers on 127.0.0.1:$DT_PORT"
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root"
  log "workspace of team $DT_TEAM (event $DT_EVENT, Unix user $DT_USER)"
  step_packages
  step_environment
  step_user
  step_home
  step_ssh
  step_scratch
  step_runner
  step_service
  log "done: $CHANGES change(s)"
}

if [ "${DT_SOURCE_ONLY:-0}" != 1 ]; then main "$@"; fi
