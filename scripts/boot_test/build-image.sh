#!/usr/bin/env bash
# Builds the boot test's Debian 12 node image: a root filesystem shaped like Debian's own
# "genericcloud" image, as an ext4 file with the kernel and initrd beside it (QEMU boots them
# directly, so the image needs no partition table or boot loader).
#   build-image.sh OUT_DIR MIRROR TEST_CA
# Writes OUT_DIR/rootfs.ext4, OUT_DIR/vmlinuz, OUT_DIR/initrd.img. Needs root (debootstrap, chroot).
# The one addition to Debian's image: TEST_CA, the boot test's package server's CA, is trusted, so
# that the nodes reach the stand-in repository over HTTPS without a change to their user-data (and
# without a first-boot update-ca-certificates, which takes minutes under software emulation).
#
# The package set follows the Debian cloud team's image definition for bookworm
# (debian-cloud-images config_space/bookworm/package_config/SYSTEM_BOOT and CLOUD, read in the
# GoCarrot/debian-cloud-images mirror at commit 1bf428c7): netplan.io rendering for
# systemd-networkd, systemd-resolved enabled with /etc/resolv.conf -> /run/systemd/resolve/resolv.conf
# (scripts/SYSTEM_BOOT/20-enable-systemd-resolved), cloud-init and openssh-server; libnss-resolve is
# left out as that definition removes it for bookworm.
set -Eeuo pipefail
readonly OUT=$1 MIRROR=$2 TEST_CA=$3
readonly SUITE=bookworm
# 6 GiB, sparse: room for what cloud-init installs on a client (Docker, Java) and the agents.
readonly SIZE=6G

ROOT="$(mktemp -d "${OUT}/rootfs.XXXXXX")"
readonly ROOT
cleanup() {
  for mount in proc sys dev; do
    umount "$ROOT/$mount" 2>/dev/null || true
  done
  rm -rf "$ROOT"
}
trap cleanup EXIT

packages=(
  # SYSTEM_BOOT
  sudo libpam-systemd systemd-resolved libnss-myhostname netplan.io polkitd
  apparmor zstd apt-utils init iptables iputils-ping less nano netbase vim-tiny whiptail
  systemd-timesyncd
  # CLOUD
  openssh-server
  # the kernel, the datasource reader, and what any Debian system has (minbase leaves them out)
  linux-image-amd64 cloud-init udev kmod iproute2 dbus ca-certificates
)
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
cat >"$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SOURCES
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
# No service starts inside the chroot while packages install (invoke-rc.d honours policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
chroot "$ROOT" apt-get update -q
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
rm -f "$ROOT/usr/sbin/policy-rc.d"
for mount in proc sys dev; do
  umount "$ROOT/$mount"
done

install -m 0644 "$TEST_CA" "$ROOT/usr/local/share/ca-certificates/hashistack-boot-test.crt"
chroot "$ROOT" update-ca-certificates
printf 'LABEL=root / ext4 rw,discard,errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
chroot "$ROOT" systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf /run/systemd/resolve/resolv.conf "$ROOT/etc/resolv.conf"
# A fresh identity at boot, as Debian's cloud images leave it (debian-cloud-images config_space/bookworm/
# scripts/LAST/10-cleanup@1bf428c7): /etc/machine-id empty, and no D-Bus machine ID, which dbus's postinst
# made here and systemd would copy into every node's /etc/machine-id.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/*

cp -L "$ROOT/vmlinuz" "$OUT/vmlinuz"
cp -L "$ROOT/initrd.img" "$OUT/initrd.img"
rm -f "$OUT/rootfs.ext4"
mkfs.ext4 -q -L root -d "$ROOT" "$OUT/rootfs.ext4" "$SIZE"
