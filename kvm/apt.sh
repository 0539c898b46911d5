# SPDX-License-Identifier: MIT
# Sourced by kvm/fetch-kernel.sh and kvm/build-kvm.sh (not run on its own): apt with nothing of
# the system's own state. Sources, lists, cache and status are private to $apt_dir, which the
# caller sets, so both scripts read the same lists (build-kvm.sh finds the version of the image
# fetch-kernel.sh unpacked) and neither touches /var/lib/apt.

# private_apt TOOL ARGS...: run apt-get or apt-cache on $apt_dir's configuration.
private_apt() {
	local tool=$1; shift
	"$tool" -o Dir::Etc::sourcelist="$apt_dir/etc/sources.list" \
		-o Dir::Etc::sourceparts="$apt_dir/etc/parts" \
		-o Dir::State::Lists="$apt_dir/lists" \
		-o Dir::State::status="$apt_dir/status" \
		-o Dir::Cache="$apt_dir" \
		-o Dir::Cache::archives="$apt_dir/archives" \
		-o APT::Architecture=amd64 -o APT::Architectures=amd64 \
		-o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
