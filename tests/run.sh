#!/usr/bin/env bash
# The whole test suite on a fresh machine with only the Rust toolchain: installs the system
# tools the end-to-end tests drive (Debian/Ubuntu packages, with sudo when not root), then
# runs `cargo test` with any arguments given. README's test command; `.ci/run` calls it.
#
# tmux drives the real binary; Xvfb runs xterm (sixel) and kitty, typed into with xdotool
# and photographed with ImageMagick; tests/slurm.rs starts a one-node Slurm (munged,
# slurmctld, slurmd: in /usr/sbin, which a user's PATH may lack); headless Chromium opens
# the HTML report (tests/report_html.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
NEED=""
for t in tmux:tmux Xvfb:xvfb xterm:xterm kitty:kitty import:imagemagick xdotool:xdotool xwininfo:x11-utils \
    munged:munge slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || NEED="$NEED ${t#*:}"
done
ls /usr/share/fonts/X11/misc/9x15* >/dev/null 2>&1 || NEED="$NEED xfonts-base"
# tests/report_html.rs opens the HTML report in headless Chromium ($TREEVIS_CHROMIUM if set)
[ -n "${TREEVIS_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 ||
    command -v chromium-browser >/dev/null 2>&1 || NEED="$NEED chromium"
if [ -n "$NEED" ]; then
    command -v apt-get >/dev/null 2>&1 || {
        echo "tests/run.sh: missing:$NEED; install them with your package manager" >&2
        exit 1
    }
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "tests/run.sh: installing$NEED" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $NEED
fi
exec cargo test "$@"
