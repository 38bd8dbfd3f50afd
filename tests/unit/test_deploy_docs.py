"""The deployment docs run: the libvirt domain XML in the README is qemu/vpn-appliance.xml, and
libvirt's own schema accepts it (virt-xml-validate, Debian package libvirt-clients + xmllint from
libxml2-utils: `make setup` installs both). The QEMU path is booted by tests/vm/test_disk_image.py,
this XML under a real libvirtd by tests/vm/test_libvirt.py."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
XML = REPO / "qemu/vpn-appliance.xml"


def _validate(path: Path) -> subprocess.CompletedProcess:
    for tool in ("virt-xml-validate", "xmllint"):
        assert shutil.which(tool), f"{tool} is missing: run `make setup` (installs libvirt-clients, libxml2-utils)"
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, timeout=60)


def test_readme_shows_the_validated_domain_xml():
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- qemu/vpn-appliance.xml[^\n]*-->\n```xml\n(.*?)```", readme, re.S)
    assert m, "the README's libvirt section shows qemu/vpn-appliance.xml"
    assert m.group(1) == XML.read_text()


def test_domain_xml_validates_with_libvirt_schema(tmp_path):
    r = _validate(XML)
    assert r.returncode == 0, r.stdout + r.stderr
    xml = XML.read_text()
    assert xml.count('<model type="virtio"/>') == 2 and '<target type="serial" port="0"/>' in xml
    # The check can fail: the same domain with a device libvirt does not know is refused.
    bad = tmp_path / "bad.xml"
    bad.write_text(xml.replace("<vcpu>1</vcpu>", "<vcpu>one</vcpu>"))
    assert _validate(bad).returncode != 0
