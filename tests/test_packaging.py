"""The distribution holds every package: the core and the demo from src/, each
first-party router plugin from plugins/, all listed in setup.cfg."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def options():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["options"]


def listed(value):
    return [line.strip() for line in value.splitlines() if line.strip()]


def packages_in(folder):
    return {p.parent.name for p in (ROOT / folder).glob("*/__init__.py")}


def test_every_package_of_src_and_plugins_is_listed():
    packages = set(listed(options()["packages"]))
    assert packages_in("src") <= packages
    assert packages_in("plugins") <= packages
    assert len(packages_in("plugins")) >= 4


def test_each_plugin_is_mapped_to_its_folder():
    package_dir = dict(
        (part.strip() for part in line.split("=", 1))
        for line in listed(options()["package_dir"])
    )
    assert package_dir[""] == "src"
    for name in packages_in("plugins"):
        assert package_dir[name] == f"plugins/{name}"
    # and nothing from src/ is mapped elsewhere
    assert not packages_in("src") & package_dir.keys()


def test_the_plugins_import_from_their_folder():
    import dbrouter_archive
    import dbrouter_replica
    import dbrouter_shard
    import dbrouter_tenant

    for module in (dbrouter_archive, dbrouter_replica, dbrouter_shard, dbrouter_tenant):
        assert Path(module.__file__).parent.parent == ROOT / "plugins"
