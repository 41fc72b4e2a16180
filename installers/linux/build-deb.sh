#!/usr/bin/env bash
# Builds the webwarden Debian package: the `webwarden` CLI, the
# `webwarden-tray` app with its login entry, the policy file, the sudoers
# rule that lets each user's agent trust its own CA, and the maintainer
# scripts that undo all of it. Prints the package's path as its last line.
#
# Usage: installers/linux/build-deb.sh [--profile release|dev] [--out DIR]
#   --profile  the Cargo profile to build with (default release; dev reuses
#              the test build, for checking the packaging quickly)
#   --out      where to put the package (default: artifacts/)
# Needs dpkg-dev (dpkg-deb, dpkg-shlibdeps) and the tray app's build
# packages (libwebkit2gtk-4.1-dev).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
profile=release
out="$root/artifacts"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "error: unknown option $1; see the usage at the top of $0" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir="$profile" ;;
esac

cd "$root"
cargo build --locked --profile "$profile" -p webwarden -p webwarden-tray >&2
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin_dir="$target_dir/$profile_dir"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/webwarden_${version}_${arch}"

# Files, with the modes lintian expects.
install -D -m 0755 "$bin_dir/webwarden" "$stage/usr/bin/webwarden"
install -D -m 0755 "$bin_dir/webwarden-tray" "$stage/usr/bin/webwarden-tray"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/bin/webwarden" "$stage/usr/bin/webwarden-tray"
install -D -m 0644 "$here/webwarden-tray.desktop" \
    "$stage/usr/share/applications/webwarden-tray.desktop"
install -D -m 0644 "$here/webwarden-tray-autostart.desktop" \
    "$stage/etc/xdg/autostart/webwarden-tray.desktop"
install -D -m 0644 "$here/policy.toml" "$stage/etc/webwarden/policy.toml"
# postinst copies the rule to /etc/sudoers.d after checking it, and prerm
# removes it, so it never outlives the program it names.
install -D -m 0644 "$here/sudoers" "$stage/usr/share/webwarden/sudoers"
for size in 32x32 128x128; do
    install -D -m 0644 "src-tauri/icons/$size.png" \
        "$stage/usr/share/icons/hicolor/$size/apps/webwarden.png"
done
install -D -m 0644 "src-tauri/icons/128x128@2x.png" \
    "$stage/usr/share/icons/hicolor/256x256/apps/webwarden.png"
doc="$stage/usr/share/doc/webwarden"
install -D -m 0644 "$here/debian/copyright" "$doc/copyright"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 installers/README.md "$doc/installers.md"
gzip -9n "$doc/README.md" "$doc/installers.md"
{
    echo "webwarden ($version) unstable; urgency=medium"
    echo
    echo "  * Package the webwarden CLI and tray app."
    echo
    echo " -- webwarden developers <webwarden@example.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Control files. dpkg-shlibdeps reads the libraries the binaries link;
# the appindicator library is loaded at run time, so it is named here.
mkdir -p "$stage/DEBIAN" "$work/debian"
printf 'Source: webwarden\n\nPackage: webwarden\nArchitecture: any\n' > "$work/debian/control"
shlibs="$(cd "$work" && dpkg-shlibdeps -O -e"$stage/usr/bin/webwarden" -e"$stage/usr/bin/webwarden-tray" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')"
installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<EOF
Package: webwarden
Version: $version
Architecture: $arch
Maintainer: webwarden developers <webwarden@example.invalid>
Installed-Size: $installed_size
Depends: $shlibs, libayatana-appindicator3-1, ca-certificates, sudo, libnss3-tools
Section: net
Priority: optional
Homepage: https://example.invalid/webwarden
Description: web filter for company workstations
 webwarden filters each employee's web traffic through a local
 intercepting proxy, blocks the sites on the company's categorized list
 with a block page and a notification, and reports every allowed and
 blocked request to the SIEM. The tray app shows whether filtering works.
EOF
printf '%s\n' /etc/webwarden/policy.toml /etc/xdg/autostart/webwarden-tray.desktop \
    > "$stage/DEBIAN/conffiles"
install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
    | LC_ALL=C sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

mkdir -p "$out"
package="$out/webwarden_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >&2
echo "$package"
