"""vpn-appliance: an OpenVPN-compatible VPN gateway that is one Python process."""
__version__ = "0.1.0"
