"""Services for `vpn-appliance run profile.ovpn` on a host (not the VM): pushed DNS applied to the
host's resolver (resolver.py: systemd-resolved per link, else /etc/resolv.conf)."""
